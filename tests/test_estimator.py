"""The Calibrator as a scikit-learn estimator (issue 17): parameters stored by ``__init__`` and
checked by ``fit``, ``get_params``/``set_params``/``clone``, one strategy per method (and a merger
for the score-level ones), fitted calibrators never changed by what is built from them, and the
0.3 file format read and written unchanged."""

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import good_records, random_unit

import mixsearch as ms
from mixsearch import Calibrator, UsageError, load_calibration, save_calibration
from mixsearch.calibration.core import (
    EPS,
    METHOD_TYPES,
    METHODS,
    Method,
    RRFMerger,
    ZScoreMerger,
    reciprocal_rank_fusion,
)
from mixsearch.calibration.relevance import RelevanceMap
from mixsearch.engine.fuse import prepare_calibration

D = 8
GOLDEN = Path(__file__).parent / "data" / "calibration-0.3"
PARAMS = dict(
    alpha=0.3,
    shift_lambda=0.8,
    rrf_k=20,
    fitted_for={"name": "tiny", "fingerprint": "f0"},
    provenance={"fitted_on": "golden"},
    zero_roles=("audio",),
)


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def data():
    """The data the files in tests/data/calibration-0.3 were fitted on (by mixsearch 0.3.0,
    ``Calibrator(method, **PARAMS).fit(data)`` then ``save_calibration``)."""
    rng = np.random.default_rng(17)
    return {
        "query": random_unit(rng, 12, D, 0.8),
        "text": random_unit(rng, 14, D, 0.4),
        "image": random_unit(rng, 16, D, -0.6),
    }


def snapshot(cal: Calibrator) -> dict:
    """Everything observable of a calibrator: parameters and fitted attributes."""
    return {
        "params": json.dumps(cal.get_params(), sort_keys=True, default=list),
        "means": {r: m.tolist() for r, m in cal.means_.items()},
        "stds": {r: s.tolist() for r, s in cal.stds_.items()},
        "counts": cal.counts_,
        "score_stats": cal.score_stats_,
        "relevance": cal.relevance_,
    }


# -- parameters ---------------------------------------------------------------------------------


def test_params_are_the_init_signature_and_round_trip():
    signature = [p for p in inspect.signature(Calibrator.__init__).parameters if p != "self"]
    cal = Calibrator("shift", **PARAMS)
    assert sorted(cal.get_params()) == sorted(signature)
    assert cal.get_params(deep=False) == {"method": "shift", **PARAMS}
    other = Calibrator()
    assert other.set_params(**cal.get_params()) is other
    assert other.get_params() == cal.get_params()
    with pytest.raises(UsageError, match="invalid Calibrator parameter.*whiten"):
        other.set_params(whiten=True)


def test_clone_gives_an_unfitted_calibrator_with_equal_params(data):
    base = pytest.importorskip("sklearn.base")
    cal = Calibrator("standardize", **PARAMS).fit(data).with_relevance(RelevanceMap())
    twin = base.clone(cal)
    assert type(twin) is Calibrator and twin.get_params() == cal.get_params()
    assert twin.fitted_for is not cal.fitted_for  # deep-copied, as clone does
    assert twin.means_ == {} and twin.counts_ == {} and twin.relevance_ is None and twin.dim_ is None
    assert cal.__sklearn_is_fitted__() and not twin.__sklearn_is_fitted__()
    np.testing.assert_allclose(twin.fit(data).transform(data["text"], "text"), cal.transform(data["text"], "text"))


def test_init_stores_and_fit_validates(data):
    cal = Calibrator(alpha=7)  # constructs: scikit-learn checks parameters in fit
    assert cal.alpha == 7
    with pytest.raises(UsageError, match=r"alpha must be in \[0, 1\], got 7"):
        cal.fit(data)
    with pytest.raises(UsageError, match="alpha must be"):
        cal.partial_fit(data["text"], "text")
    with pytest.raises(UsageError, match="alpha must be"):
        cal.transform_documents({"text": data["text"]})
    for bad, match in [
        (dict(method="whiten"), "unknown calibration method 'whiten'"),
        (dict(shift_lambda=float("nan")), "shift_lambda must be a finite number"),
        (dict(rrf_k=-1), "rrf_k must be >= 0"),
        (dict(zero_roles=("screenshot",)), "unknown role 'screenshot'"),
    ]:
        with pytest.raises(UsageError, match=match):
            Calibrator(**bad).fit(data)
    assert Calibrator(method="rrf").check_params().method == "rrf"


# -- strategies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_every_method_transforms_as_in_0_3(data, method):
    """The vector maths of each strategy against the direct formulas of the module doc."""
    cal = Calibrator(method, alpha=0.3, shift_lambda=0.8).fit(data)
    m = {r: x.astype(np.float64).mean(0) for r, x in data.items()}
    s = {r: x.astype(np.float64).std(0) for r, x in data.items()}
    g = m["image"] - m["text"]
    step = {
        "none": lambda x, r: x,
        "mean": lambda x, r: x - m[r],
        "standardize": lambda x, r: (x - m[r]) / (s[r] + EPS),
        "shift": lambda x, r: x + (0.4 * g if r in ("query", "text") else -0.4 * g),
        "zscore": lambda x, r: x,
        "rrf": lambda x, r: x,
    }[method]
    assert isinstance(cal.strategy, Method) and cal.strategy is METHOD_TYPES[method]
    for role, x in data.items():
        np.testing.assert_allclose(cal.transform(x, role), unit(step(x, role)), atol=1e-5)
    t, i = data["text"][:6], data["image"][:6]
    fused = unit(0.3 * step(t, "text") + 0.7 * step(i, "image"))
    np.testing.assert_allclose(cal.transform_documents({"text": t, "image": i}), fused, atol=1e-5)
    assert cal.score_level == (method in ("zscore", "rrf"))


def test_score_level_methods_are_mergers(data):
    lists = {"text": (["t1", "t2"], [0.5, 0.1]), "image": (["i1", "i2"], [0.3, 0.2]), "multimodal": (["m1"], [0.4])}
    zscore = Calibrator("zscore").fit(data)
    merger = zscore.merger()
    assert isinstance(merger, ZScoreMerger)
    stats = zscore.score_stats_
    fixed = {d: (s - stats[m][0]) / stats[m][1] for m, (ids, ss) in lists.items() for d, s in zip(ids, ss)}
    ids, scores = merger.merge(lists, 3)
    assert ids == sorted(fixed, key=lambda d: -fixed[d])[:3]
    assert scores == pytest.approx([fixed[d] for d in ids])
    np.testing.assert_allclose(
        zscore.transform_scores(np.array([0.5, 0.3]), ["text", "image"]), [fixed["t1"], fixed["i1"]], atol=1e-12
    )

    rrf = Calibrator("rrf", rrf_k=5).fit(data)
    assert isinstance(rrf.merger(), RRFMerger)
    assert rrf.merger().merge(lists, 4) == reciprocal_rank_fusion(list(lists.values()), k=5, depth=4)
    for method in ("none", "mean", "standardize", "shift"):
        with pytest.raises(UsageError, match="has no merger"):
            Calibrator(method).fit(data).merger()


# -- no mutation from outside -------------------------------------------------------------------


def test_new_calibrators_from_a_fitted_one_leave_it_unchanged(data):
    cal = Calibrator("zscore", **PARAMS).fit(data).with_relevance(RelevanceMap())
    before = snapshot(cal)
    model = {"name": "tiny", "fingerprint": "f0", "dim": D}
    view, _ = prepare_calibration(cal, model, 0.9)
    assert view is not cal and view.alpha == 0.9 and view.relevance_ is cal.relevance_
    assert view.score_stats_["multimodal"] != cal.score_stats_["multimodal"]  # fitted at 0.9, not 0.3
    assert cal.with_alpha(0.1).alpha == 0.1
    assert cal.with_method("mean").relevance_ is None
    assert cal.with_method("none").means_ == {}
    borrowed = cal.with_role("query", "text")
    np.testing.assert_array_equal(borrowed.means_["query"], cal.means_["text"])
    assert cal.with_relevance(None).relevance_ is None
    assert cal.with_params(provenance={"other": 1}).provenance == {"other": 1}
    assert snapshot(cal) == before


def test_a_view_with_another_alpha_leaves_the_index_calibrator_unchanged(tiny_clip, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in good_records(tmp_path, rng)))
    index, _ = ms.build_index(path, tmp_path / "idx", str(tiny_clip), calibration=None, progress=False)
    own, before = index.calibrator, snapshot(index.calibrator)
    view = index.with_calibration(own, 0.9)
    assert view.alpha == 0.9 and view.calibrator.alpha == 0.9 and view.calibrator is not own
    assert index.calibrator is own and own.alpha == index.alpha != 0.9
    assert snapshot(own) == before
    np.testing.assert_array_equal(
        index.calibrator.means_["text"], ms.open_index(tmp_path / "idx").calibrator.means_["text"]
    )


# -- the file format ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip_of_each_method(data, tmp_path, method):
    cal = Calibrator(method, **PARAMS).fit(data).with_relevance(RelevanceMap("platt").fit(*_pairs()))
    back = load_calibration(save_calibration(cal, tmp_path / "c.safetensors"))
    params = back.get_params()
    assert {**params, "zero_roles": tuple(params["zero_roles"])} == {**cal.get_params(), "rrf_k": 20.0}
    assert back.counts_ == cal.counts_ and back.score_stats_.keys() == cal.score_stats_.keys()
    for m, stats in cal.score_stats_.items():
        assert back.score_stats_[m] == pytest.approx(stats)
    for role, x in data.items():
        np.testing.assert_allclose(back.transform(x, role), cal.transform(x, role), atol=1e-6)
    np.testing.assert_array_equal(
        back.relevance_.predict([0.1, 0.5], "text"), cal.relevance_.predict([0.1, 0.5], "text")
    )


@pytest.mark.parametrize("method", METHODS)
def test_files_of_0_3_load_unchanged_and_are_written_alike(data, tmp_path, method):
    """tests/data/calibration-0.3 holds files mixsearch 0.3.0 wrote: they load to the same
    calibrator as a fit today, and today's file of that fit has the same metadata and tensors."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    old_path = GOLDEN / f"{method}.safetensors"
    old = load_calibration(old_path)
    fresh = Calibrator(method, **PARAMS).fit(data)
    assert (old.method, old.alpha, old.shift_lambda, old.rrf_k) == (method, 0.3, 0.8, 20.0)
    assert old.counts_ == fresh.counts_ and list(old.zero_roles) == ["audio"]
    for role, x in data.items():
        np.testing.assert_allclose(old.transform(x, role), fresh.transform(x, role), atol=1e-6)
    t, i = data["text"][:5], data["image"][:5]
    np.testing.assert_allclose(
        old.transform_documents({"text": t, "image": i}), fresh.transform_documents({"text": t, "image": i}), atol=1e-6
    )
    new_path = save_calibration(fresh, tmp_path / "new.safetensors")
    metas = []
    for p in (old_path, new_path):
        with safe_open(str(p), framework="numpy") as f:
            metas.append(f.metadata())
    assert metas[0] == metas[1]
    old_t, new_t = load_file(str(old_path)), load_file(str(new_path))
    assert old_t.keys() == new_t.keys()
    for key in old_t:
        np.testing.assert_allclose(new_t[key], old_t[key], rtol=1e-6, err_msg=key)


def test_from_statistics_checks_what_it_is_given():
    with pytest.raises(ms.CalibrationError, match="positive item count"):
        Calibrator.from_statistics({"text": np.zeros(D)}, {"text": 0})
    with pytest.raises(ms.CalibrationError, match="finite numbers"):
        Calibrator.from_statistics({"text": np.full(D, np.nan)})
    with pytest.raises(UsageError, match="unknown calibration method"):
        Calibrator.from_statistics({}, method="median")
    cal = Calibrator.from_statistics(
        {"text": np.ones(D)}, {"text": 3}, stds={"text": np.full(D, 2.0)}, method="standardize"
    )
    assert cal.counts_ == {"text": 3}
    np.testing.assert_allclose(cal.stds_["text"], 2.0)


def _pairs():
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 1, 400)
    labels = (rng.uniform(0, 1, 400) < scores).astype(int)
    return scores, labels, np.array(["text", "image"] * 200)

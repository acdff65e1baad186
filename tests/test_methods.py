"""Calibration methods beside mean and none (standardize, shift, zscore, rrf): each one's maths
against a direct numpy computation, the file round trip, score-level ranking through a real
MixIndex, the CLI, and bench --methods."""

import json

import numpy as np
import pytest
from conftest import good_records, random_unit
from test_bench import beir, captions, cfg  # noqa: F401 - fixtures
from typer.testing import CliRunner

from mixsearch import CalibrationError, Calibrator, UsageError, load_calibration, save_calibration
from mixsearch import bench as B
from mixsearch.calibration.core import EPS, METHODS, SCORE_SAMPLE, reciprocal_rank_fusion
from mixsearch.cli import app

D = 24


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    return {
        "query": random_unit(rng, 40, D, 0.8),
        "text": random_unit(rng, 50, D, 0.5),
        "image": random_unit(rng, 60, D, -0.7),
    }


def test_methods_are_the_six():
    assert METHODS == ("none", "mean", "standardize", "shift", "zscore", "rrf")
    with pytest.raises(UsageError, match="unknown calibration method"):
        Calibrator("whiten").fit({})


def test_standardize_formula(data):
    cal = Calibrator("standardize", alpha=0.3).fit(data)
    m = {r: x.astype(np.float64).mean(0) for r, x in data.items()}
    s = {r: x.astype(np.float64).std(0) for r, x in data.items()}
    for role, x in data.items():
        np.testing.assert_allclose(cal.stds_[role], s[role], atol=1e-6)
        np.testing.assert_allclose(cal.transform(x, role), unit((x - m[role]) / (s[role] + EPS)), atol=1e-5)
    t, i = data["text"][:10], data["image"][:10]
    fused = unit(0.3 * (t - m["text"]) / (s["text"] + EPS) + 0.7 * (i - m["image"]) / (s["image"] + EPS))
    np.testing.assert_allclose(cal.transform_documents({"text": t, "image": i}), fused, atol=1e-5)


def test_standardize_streaming_equals_batch(data):
    whole = Calibrator("standardize").fit(data)
    parts = Calibrator("standardize")
    for role, x in data.items():
        for chunk in np.array_split(x, 4):
            parts.partial_fit(chunk, role)
    for role in data:
        np.testing.assert_allclose(parts.stds_[role], whole.stds_[role], atol=1e-6)


@pytest.mark.parametrize("lam", [1.0, 0.6])
def test_shift_formula(data, lam):
    cal = Calibrator("shift", shift_lambda=lam).fit(data)
    g = data["image"].mean(0) - data["text"].mean(0)
    np.testing.assert_allclose(cal.transform(data["query"], "query"), unit(data["query"] + lam / 2 * g), atol=1e-5)
    np.testing.assert_allclose(cal.transform(data["text"], "text"), unit(data["text"] + lam / 2 * g), atol=1e-5)
    np.testing.assert_allclose(cal.transform(data["image"], "image"), unit(data["image"] - lam / 2 * g), atol=1e-5)
    t, i = data["text"][:5], data["image"][:5]
    fused = unit(0.5 * (t + lam / 2 * g) + 0.5 * (i - lam / 2 * g))
    np.testing.assert_allclose(cal.transform_documents({"text": t, "image": i}), fused, atol=1e-5)
    moved_t, moved_i = cal.centre(data["text"], "text").mean(0), cal.centre(data["image"], "image").mean(0)
    # lambda = 1: the (unnormalised) centroids meet; less: the gap shrinks by 1 - lambda
    np.testing.assert_allclose(moved_i - moved_t, (1 - lam) * g, atol=1e-5)


def test_shift_needs_an_image_part(data):
    cal = Calibrator("shift").fit({"query": data["query"], "text": data["text"]})
    with pytest.raises(CalibrationError, match="no image part"):
        cal.transform(data["text"], "text")


def test_zscore_statistics_and_scores(data):
    cal = Calibrator("zscore", alpha=0.4).fit(data)
    q = unit(data["query"])
    expected = {m: q @ unit(data[m]).T for m in ("text", "image")}
    n = min(len(data["text"]), len(data["image"]))
    expected["multimodal"] = q @ unit(0.4 * unit(data["text"][:n]) + 0.6 * unit(data["image"][:n])).T
    stats = cal.score_stats_
    for m, s in expected.items():
        assert stats[m] == pytest.approx((s.mean(), s.std()), abs=1e-6)
    scores = np.array([[0.3, 0.1, -0.2], [0.05, 0.5, 0.0]])
    mods = np.array(["text", "image", "multimodal"])
    direct = np.array([[(scores[r, c] - stats[m][0]) / stats[m][1] for c, m in enumerate(mods)] for r in range(2)])
    np.testing.assert_allclose(cal.transform_scores(scores, mods), direct, atol=1e-12)
    # vectors are left as plain CLIP leaves them
    np.testing.assert_allclose(cal.transform(data["query"], "query"), unit(data["query"]), atol=1e-6)
    with pytest.raises(CalibrationError, match="no score statistics for 'audio'"):
        cal.transform_scores(scores[:, :1], np.array(["audio"]))


def test_zscore_sample_is_bounded():
    rng = np.random.default_rng(0)
    cal = Calibrator("zscore")
    for _ in range(3):
        cal.partial_fit(random_unit(rng, SCORE_SAMPLE // 2 + 7, D), "text")
    assert cal.counts_["text"] == 3 * (SCORE_SAMPLE // 2 + 7)
    assert sum(len(x) for x in cal._fit.samples["text"]) == SCORE_SAMPLE


def test_reciprocal_rank_fusion_formula():
    a = (["x", "y", "z"], [0.9, 0.8, 0.1])
    b = (["y", "w"], [0.7, 0.6])
    ids, scores = reciprocal_rank_fusion([a, b], k=60)
    direct = {"x": 1 / 61, "y": 1 / 62 + 1 / 61, "z": 1 / 63, "w": 1 / 62}
    assert ids == sorted(direct, key=lambda d: -direct[d])[:4] and ids[0] == "y"
    assert scores == pytest.approx([direct[d] for d in ids])
    # disjoint lists interleave (ties at the same rank ordered by raw score); depth cuts
    ids, _ = reciprocal_rank_fusion([(["t1", "t2"], [0.2, 0.1]), (["i1", "i2"], [0.5, 0.4])], depth=3)
    assert ids == ["i1", "t1", "i2"]


@pytest.mark.parametrize("method", METHODS)
def test_file_round_trip(data, tmp_path, method):
    cal = Calibrator(method, alpha=0.3, shift_lambda=0.7, rrf_k=10, fitted_for={"name": "m", "fingerprint": "f"})
    cal.fit(data)
    back = load_calibration(save_calibration(cal, tmp_path / "c.safetensors"))
    assert (back.method, back.alpha, back.shift_lambda, back.rrf_k) == (method, 0.3, 0.7, 10.0)
    assert back.counts_ == cal.counts_
    for role in data:
        np.testing.assert_allclose(back.transform(data[role], role), cal.transform(data[role], role), atol=1e-6)
    t, i = data["text"][:5], data["image"][:5]
    np.testing.assert_allclose(
        back.transform_documents({"text": t, "image": i}), cal.transform_documents({"text": t, "image": i}), atol=1e-6
    )
    assert back.score_stats_.keys() == cal.score_stats_.keys()
    for m, stats in cal.score_stats_.items():
        assert back.score_stats_[m] == pytest.approx(stats)
    if method == "zscore":
        assert set(back.score_stats_) == {"text", "image", "multimodal"}


def test_old_file_format_still_loads(data, tmp_path):
    """A file of means only (as written before the other methods) loads; standardize says what it lacks."""
    from safetensors.numpy import save_file

    meta = {"format": "mixsearch-calibration/1", "method": "mean", "alpha": "0.5", "counts": '{"text": 50}'}
    path = tmp_path / "old.safetensors"
    save_file({"mean.text": data["text"].mean(0)}, str(path), metadata=meta)
    old = load_calibration(path)
    np.testing.assert_allclose(old.transform(data["text"], "text"), unit(data["text"] - data["text"].mean(0)), 1e-5)
    with pytest.raises(CalibrationError, match="no standard deviation"):
        old.with_method("standardize").transform(data["text"], "text")


def test_with_method_shares_one_fit(data):
    mean = Calibrator().fit(data)
    for method in METHODS:
        other = mean.with_method(method)
        direct = Calibrator(method).fit(data)
        for role, x in data.items():
            if method == "shift" and role == "query":
                continue
            np.testing.assert_allclose(other.transform(x, role), direct.transform(x, role), atol=1e-6)
    assert mean.method == "mean" and mean.with_method("none").means_ == {}


# -- through the engine ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tiny_clip, tmp_path_factory):
    """A 12-document mixed index (plain), its encoder, and a mean calibration fitted on other items."""
    from mixsearch import build_index, fit_calibration, load_encoder

    folder = tmp_path_factory.mktemp("methods")
    rng = np.random.default_rng(5)
    docs = folder / "corpus.jsonl"
    docs.write_text("".join(json.dumps(r) + "\n" for r in good_records(folder, rng, absolute_pairs=True)))
    enc = load_encoder(str(tiny_clip))
    idx, _ = build_index(docs, folder / "idx", enc, calibration="none", progress=False)
    cal_folder = folder / "cal"
    records = good_records(cal_folder, np.random.default_rng(9))
    texts = [r["text"] for r in records if "text" in r]
    images = [str(cal_folder / r["image"]) for r in records if "image" in r]
    queries = ["a dog runs on the beach", "red ball in snow", "child on a bike", "man and woman in water"]
    cal = fit_calibration(enc, {"query": queries, "text": texts, "image": images}, progress=False)
    return idx, enc, cal


QUERIES = ["dog beach", "blue street bike", "snow child", "grass water cat", "red man runs"]


def _direct(idx, enc, cal, method):
    """Score-level ranking computed by hand from the plain vectors: ``{query: [ids]}``."""
    q = unit(enc.encode(QUERIES, "text", progress=False))
    raw = idx.raw()
    parts = {m: np.asarray(raw[m]) for m in raw}
    present = {m: np.array([v is not None for v in idx.documents[m]]) for m in raw}
    vectors = Calibrator("none").transform_documents(parts, present)
    scores = q @ vectors.T
    mods = idx.modality
    out = []
    for row in scores:
        if method == "zscore":
            stats = cal.score_stats_
            key = {d: -(row[j] - stats[mods[j]][0]) / stats[mods[j]][1] for j, d in enumerate(idx.ids)}
            out.append(sorted(idx.ids, key=lambda d: (key[d], d)))
        else:
            rank = {}
            for m in set(mods):
                members = sorted((j for j in range(len(mods)) if mods[j] == m), key=lambda j: -row[j])
                rank.update({idx.ids[j]: r for r, j in enumerate(members, 1)})
            raw_score = dict(zip(idx.ids, row))
            out.append(sorted(idx.ids, key=lambda d: (-1 / (60 + rank[d]), -raw_score[d], d)))
    return out


@pytest.mark.parametrize("method", ["zscore", "rrf"])
def test_score_level_ranking_through_mixindex(engine, method):
    idx, enc, cal = engine
    view = idx.with_calibration(cal.with_method(method))
    assert view.manifest.calibration.method == method
    got = view.search(QUERIES, k=12).ids()
    assert got == _direct(idx, enc, view.calibrator, method)
    top = view.search(QUERIES, k=5).ids()  # k smaller than the corpus: the same head
    assert top == [g[:5] for g in got]
    # a modality filter keeps the method's order within that modality
    only = view.search(QUERIES, k=12, modality="image").ids()
    assert only == [[d for d in g if d.startswith("i")] for g in got]
    plain = idx.search(QUERIES, k=12).ids()
    assert got != plain  # the method changed the merged order (the plain one favours one modality)


def test_vector_methods_through_mixindex(engine):
    idx, enc, cal = engine
    q = enc.encode(QUERIES[:2], "text", progress=False)
    for method in ("standardize", "shift"):
        c = cal.with_method(method)
        view = idx.with_calibration(c)
        raw = idx.raw()
        parts = {m: np.asarray(raw[m]) for m in raw}
        present = {m: np.array([v is not None for v in idx.documents[m]]) for m in raw}
        scores = c.transform(q, "query") @ c.transform_documents(parts, present).T
        expected = [[idx.ids[j] for j in np.argsort(-row, kind="stable")[:5]] for row in scores]
        assert view.search(QUERIES[:2], k=5).ids() == expected


def test_build_and_recalibrate_with_a_method(engine, tmp_path):
    from mixsearch import build_index, open_index

    idx, enc, _ = engine
    corpus = [d for d in idx.documents["id"]]
    assert corpus
    folder = idx.folder
    records = [json.loads(line) for line in (folder.parent / "corpus.jsonl").read_text().splitlines()]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    built, _ = build_index(path, tmp_path / "idx", enc, method="standardize", progress=False)
    assert built.manifest.calibration.method == "standardize" and built.calibrator.stds_
    opened = open_index(tmp_path / "idx", encoder=enc)
    assert opened.calibrator.method == "standardize"
    opened.recalibrate(opened.calibrator, method="zscore")
    again = open_index(tmp_path / "idx", encoder=enc)
    assert again.calibrator.method == "zscore" and set(again.calibrator.score_stats_) >= {"text", "image"}
    runner = CliRunner()
    res = runner.invoke(app, ["recalibrate", str(tmp_path / "idx"), "--method", "shift", "--calibration", "corpus"])
    assert res.exit_code == 0, res.output
    info = runner.invoke(app, ["info", str(tmp_path / "idx"), "--json"])
    manifest = json.loads(info.output)
    assert manifest["calibration"]["method"] == "shift" and manifest["calibration"]["lambda"] == 1.0
    bad = runner.invoke(app, ["recalibrate", str(tmp_path / "idx"), "--method", "whiten"])
    assert bad.exit_code == 2 and "unknown calibration method" in bad.output
    res = runner.invoke(app, ["index", str(path), "--out", str(tmp_path / "cli"), "-m", enc.name, "--method", "rrf"])
    assert res.exit_code == 0, res.output
    assert open_index(tmp_path / "cli").calibrator.method == "rrf"


# -- bench --methods -------------------------------------------------------------------------------


ALL = ("none", "mean", "standardize", "shift", "zscore", "rrf")


def test_bench_methods_on_captions(tiny_clip, captions, tmp_path):  # noqa: F811
    result, paths = B.bench(captions, [str(tiny_clip)], tmp_path / "out", config=cfg(settings=(1, 2, 3), methods=ALL))
    rows = result["runs"][0]["rows"]
    labels = {"none": "plain", "mean": "calibrated"}
    for setting in (1, 2, 3):
        mine = [r for r in rows if r["setting"] == setting and "pushdown" not in r["variant"]]
        assert {r["method"] for r in mine} == set(ALL)
        assert all(r["variant"] == labels.get(r["method"], r["method"]) for r in mine)
        assert all(r["metrics"] is not None for r in mine)  # every method applies to image-text data
    s3 = {r["method"]: r for r in rows if r["setting"] == 3}
    assert s3["zscore"]["metrics"] != s3["none"]["metrics"] or s3["rrf"]["metrics"] != s3["none"]["metrics"]
    # setting 2 has one document modality: the score-level methods rank as none, and say so
    s2 = [r for r in rows if r["setting"] == 2 and r["method"] in ("zscore", "rrf")]
    assert all("one document modality" in r["note"] for r in s2)
    for r in s2:
        none = next(x for x in rows if x["setting"] == 2 and x["method"] == "none" and x["alpha"] == r["alpha"])
        assert r["metrics"]["ndcg@10"] == pytest.approx(none["metrics"]["ndcg@10"])
    md = (tmp_path / "out" / "report.md").read_text()
    table = md.split("### Calibration methods")[1].split("\n\n")[1]
    assert table.splitlines()[0] == "| model | setting | plain | calibrated | standardize | shift | zscore | rrf |"
    assert len(table.splitlines()) == 2 + 3
    assert any("alpha_curve" in str(p) for p in paths.values())


def test_bench_methods_on_text_only_data(tiny_clip, beir, tmp_path):  # noqa: F811
    result, _ = B.bench(beir, [str(tiny_clip)], tmp_path / "out", config=cfg(settings=(3,), methods=ALL))
    rows = {r["method"]: r for r in result["runs"][0]["rows"]}
    assert rows["shift"]["metrics"] is None and "no image part" in rows["shift"]["note"]
    for method in ("zscore", "rrf"):
        assert rows[method]["metrics"] == rows["none"]["metrics"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "n/a" in md and "no image part" in md


def test_cli_bench_methods(tiny_clip, captions, tmp_path):  # noqa: F811
    runner = CliRunner()
    args = ["bench", str(captions), "-m", str(tiny_clip), "--out", str(tmp_path / "r"), "--max-queries", "4"]
    res = runner.invoke(app, [*args, "--methods", "none,standardize,rrf"])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert [r["method"] for r in data["runs"][0]["rows"]] == ["none", "standardize", "rrf"]
    bad = runner.invoke(app, [*args, "--methods", "mean,whiten"])
    assert bad.exit_code == 2 and "--methods" in bad.output

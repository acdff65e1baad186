"""Relevance thresholds: the per-modality score -> relevance map (numpy apply equals scikit-learn's
fit), its place in the calibration file, ``min_relevance`` through a real index, fitting it from
a labelled dataset, the bench study and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import good_records, sentence, write_image
from typer.testing import CliRunner

import mixsearch as ms
from mixsearch import bench as B
from mixsearch.calibration.relevance import POOLED, RelevanceMap
from mixsearch.cli import app


def synthetic(rng, n: int = 3000, gap: float = 0.2):
    """Pairs whose relevance follows the same law of the *text-equivalent* score for text and
    image documents, image scores running ``gap`` higher (a modality gap)."""
    base = rng.uniform(0.0, 0.6, n)
    labels = (rng.uniform(size=n) < np.clip((base - 0.1) * 2.0, 0, 1)).astype(int)
    modalities = np.where(rng.uniform(size=n) < 0.5, "text", "image").astype(object)
    scores = base + np.where(modalities == "image", gap, 0.0)
    return scores, labels, modalities


# -- the map ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["isotonic", "platt"])
def test_predict_equals_sklearn_fitted_on_the_same_pairs(kind):
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    s, y, m = synthetic(rng)
    rel = RelevanceMap(kind).fit(s, y, m)
    probe = np.linspace(-0.2, 1.0, 301)  # beyond both ends too: clipped like sklearn's
    for modality in ("text", "image"):
        mine = m == modality
        if kind == "isotonic":
            ref = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(s[mine], y[mine]).predict(probe)
        else:
            ref = LogisticRegression(C=np.inf).fit(s[mine][:, None], y[mine]).predict_proba(probe[:, None])[:, 1]
        np.testing.assert_allclose(rel.predict(probe, modality), ref, atol=1e-9)
    assert rel.modalities_ == ["image", "text"] and rel.notes_ == []
    assert rel.counts_["text"]["positives"] + rel.counts_["image"]["positives"] == y.sum()


@pytest.mark.parametrize("kind", ["isotonic", "platt"])
def test_monotone_and_in_unit_interval(kind):
    rng = np.random.default_rng(1)
    rel = RelevanceMap(kind).fit(*synthetic(rng))
    probe = np.linspace(-1, 1, 2001)
    for modality in ("text", "image", "video"):  # video: never fitted, takes the pooled map
        out = rel.predict(probe, modality)
        assert np.all(np.diff(out) >= 0) and out.min() >= 0 and out.max() <= 1
    assert rel.source("video") == POOLED


def test_one_threshold_means_the_same_precision_for_every_modality():
    """Image scores run 0.2 higher than text scores for the same relevance: a raw cut-off favours
    images; the mapped relevance cuts both at the same precision."""
    rng = np.random.default_rng(2)
    rel = RelevanceMap().fit(*synthetic(rng, n=20000))  # fit on one sample ...
    s, y, m = synthetic(rng, n=20000)  # ... measure on another
    r = rel.predict(s, m)

    def precision(kept, modality):
        mine = kept & (m == modality)
        return y[mine].mean()

    raw = s >= 0.5  # the raw cut-off of the same hit volume as relevance >= 0.6, roughly
    mapped = r >= 0.6
    raw_gap = precision(raw, "image") - precision(raw, "text")
    mapped_gap = abs(precision(mapped, "image") - precision(mapped, "text"))
    assert raw_gap < -0.15  # images pass the raw cut at lower true relevance: lower precision
    assert mapped_gap < 0.03
    assert min(precision(mapped, x) for x in ("text", "image")) >= 0.6 - 0.03


def test_too_few_pairs_fall_back_to_the_pooled_map_or_fail():
    rng = np.random.default_rng(3)
    s, y, m = synthetic(rng, n=400)
    m[:6] = "multimodal"
    y[:6] = 1  # 6 relevant, no non-relevant multimodal pairs
    rel = RelevanceMap(min_positives=5, min_negatives=5).fit(s, y, m)
    assert rel.source("multimodal") == POOLED and "multimodal" not in rel.modalities_
    assert any("multimodal: 6 relevant and 0 non-relevant" in n for n in rel.notes_)
    np.testing.assert_allclose(rel.predict(s[:6], m[:6]), rel.predict(s[:6], POOLED))
    with pytest.raises(ms.CalibrationError, match="too few labelled pairs"):
        RelevanceMap(min_positives=50).fit(s[:60], np.r_[np.ones(3), np.zeros(57)], m[:60])
    with pytest.raises(ms.UsageError, match="unknown relevance map kind"):
        RelevanceMap("sigmoid")
    with pytest.raises(ms.CalibrationError, match="3 scores, 2 labels"):
        RelevanceMap().fit([0.1, 0.2, 0.3], [0, 1], ["text"] * 3)


@pytest.mark.parametrize("kind", ["isotonic", "platt"])
def test_round_trip_through_the_calibration_file(kind, tmp_path):
    rng = np.random.default_rng(4)
    cal = ms.Calibrator(fitted_for={"name": "m", "fingerprint": "f", "dim": "4"}).fit(
        {r: rng.normal(size=(5, 4)) for r in ("query", "text", "image")}
    )
    cal = cal.with_relevance(RelevanceMap(kind).fit(*synthetic(rng)))
    cal.relevance_.info = {"queries": 12, "dataset": {"path": "x"}}
    path = ms.save_calibration(cal, tmp_path / "c.safetensors")
    back = ms.load_calibration(path)
    assert back.relevance_ is not None and back.relevance_.kind == kind
    probe = np.linspace(0, 1, 50)
    for modality in ("text", "image", "audio"):
        np.testing.assert_array_equal(back.relevance_.predict(probe, modality), cal.relevance_.predict(probe, modality))
    assert back.relevance_.counts_ == cal.relevance_.counts_ and back.relevance_.info["queries"] == 12
    # a file without a map loads as before; fitting new means drops a map (its scores changed)
    plain = ms.load_calibration(ms.save_calibration(ms.Calibrator("none"), tmp_path / "none.safetensors"))
    assert plain.relevance_ is None
    back.fit({"query": rng.normal(size=(3, 4))})
    assert back.relevance_ is None


def test_damaged_relevance_map_is_refused_naming_the_file(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(5)
    cal = ms.Calibrator("none").with_relevance(RelevanceMap().fit(*synthetic(rng)))
    path = ms.save_calibration(cal, tmp_path / "c.safetensors")
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    del tensors["relevance.text.y"]
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(ms.CalibrationError, match=r"bad.safetensors.*relevance.text.y"):
        ms.load_calibration(tmp_path / "bad.safetensors")


# -- through an index -----------------------------------------------------------------------------


@pytest.fixture
def small_index(tiny_clip, tmp_path):
    rng = np.random.default_rng(0)
    records = good_records(tmp_path, rng)
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    index, _ = ms.build_index(path, tmp_path / "idx", str(tiny_clip), calibration=None, progress=False)
    return index


def test_min_relevance_cuts_hits_through_a_real_index(small_index, tmp_path):
    with pytest.raises(ms.UsageError, match="no relevance map.*mixsearch fit-relevance"):
        small_index.search("dog", min_relevance=0.5)
    all_hits = small_index.search("a dog on the beach", k=12)
    assert all(h.relevance is None for h in all_hits) and "relevance" not in all_hits[0].to_dict()
    scores = np.array([h.score for h in all_hits])
    # a made-up map: relevance rises with the score, text documents judged more strictly
    rel = RelevanceMap("platt", min_positives=1, min_negatives=1)
    rel.params_ = {POOLED: {"a": np.array([40.0]), "b": np.array([-40.0 * float(np.median(scores))])}}
    rel.params_["text"] = {"a": np.array([40.0]), "b": np.array([-40.0 * float(np.median(scores)) - 2])}
    cal = small_index.calibrator.with_relevance(rel)
    view = small_index.with_calibration(cal)
    hits = view.search("a dog on the beach", k=12)
    assert [h.id for h in hits] == [h.id for h in all_hits]  # the map judges, it does not re-rank
    expected = rel.predict(scores, [h.modality for h in all_hits])
    np.testing.assert_allclose([h.relevance for h in hits], expected)
    assert hits[0].to_dict()["relevance"] == pytest.approx(expected[0])
    cut = view.search("a dog on the beach", k=12, min_relevance=0.5)
    assert 0 < len(cut) < 12
    assert [h.id for h in cut] == [h.id for h, r in zip(all_hits, expected) if r >= 0.5]
    assert [h.rank for h in cut] == list(range(1, len(cut) + 1))
    batch = view.search(["a dog on the beach", "red ball"], k=12, min_relevance=0.5)
    assert batch.ids()[0] == [h.id for h in cut]
    assert view.search("a dog on the beach", k=12, min_relevance=1.0) == [] or all(
        h.relevance >= 1.0 for h in view.search("a dog on the beach", k=12, min_relevance=1.0)
    )
    for bad in (1.5, -0.1, float("nan"), "high", True):
        with pytest.raises(ms.UsageError, match="min_relevance"):
            view.search("dog", min_relevance=bad)
    # written into the folder, the map comes back with the index
    view.persist()
    reopened = ms.open_index(small_index.folder)
    assert [h.id for h in reopened.search("a dog on the beach", k=12, min_relevance=0.5)] == [h.id for h in cut]
    assert reopened.manifest.calibration.relevance["kind"] == "platt"
    assert reopened.with_calibration("none").calibrator.relevance_ is None  # plain CLIP: no map
    reopened.calibrator.relevance_.info["alpha"] = 0.5
    notes = reopened.with_calibration(reopened.calibrator, alpha=0.8).manifest.calibration.notes
    assert any("fitted at alpha 0.5" in n for n in notes)


# -- fitting from a labelled dataset, the bench study, the CLI ---------------------------------------


@pytest.fixture
def captions(tmp_path):
    """A captions dataset big enough to fit maps: 48 dev items, 12 train items."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "caps"
    (folder / "images").mkdir(parents=True)
    for split, n, offset in (("dev", 48, 0), ("train", 12, 100)):
        with (folder / f"{split}.jsonl").open("w") as f:
            for i in range(n):
                write_image(folder / "images" / f"{split}{i}.png", offset + i)
                f.write(
                    json.dumps({"image": f"images/{split}{i}.png", "captions": [sentence(rng, 5) for _ in range(5)]})
                    + "\n"
                )
    return folder


def test_relevance_pairs_hold_every_judged_pair_and_hard_negatives(tiny_clip, captions, tmp_path):
    b = B.load_captions(captions)
    docs, _ = B.mixed_corpus(b, 0)
    index, _ = ms.build_index(docs, tmp_path / "idx", str(tiny_clip), calibration="none", progress=False)
    vecs = B.thresholds.query_vectors(
        index, {("text",): ([q.id for q in b.queries], {"text": index.encoder.encode([q.text for q in b.queries])})}
    )
    scores, labels, mods = B.relevance_pairs(index, vecs, b.qrels, depth=3, random=2, seed=0)
    assert labels.sum() == 48  # every query's one relevant document, retrieved or not
    # each query: the 3 best of each of the 3 modalities, its relevant document, 2 random (overlaps merged)
    assert 48 * 9 <= len(scores) <= 48 * 12
    assert set(mods) == {"text", "image", "multimodal"}
    # the relevant pairs' scores are the index's own cosines, whether retrieved or computed
    expected = sorted(next(h.score for h in index.search(q.text, k=48) if h.id in b.qrels[q.id]) for q in b.queries)
    np.testing.assert_allclose(sorted(scores[labels == 1]), expected, atol=1e-5)


def test_fit_relevance_api_and_cli_then_search(tiny_clip, captions, tmp_path):
    cal = B.fit_relevance(captions, str(tiny_clip), kind="platt", min_pairs=3)
    assert cal.method == "mean" and cal.counts_["query"] == 12  # means from train.jsonl, as bench
    rel = cal.relevance_
    assert rel is not None and rel.info["queries"] == 48 and rel.info["dataset"]["path"].endswith("dev.jsonl")
    assert set(rel.counts_) == {POOLED, "text", "image", "multimodal"}

    runner = CliRunner()
    out = tmp_path / "rel.safetensors"
    args = ["fit-relevance", str(captions), "--model", str(tiny_clip), "--out", str(out), "--min-pairs", "3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "isotonic relevance map on 48 queries" in result.output and "recalibrate" in result.output
    assert ms.load_calibration(out).relevance_.kind == "isotonic"
    bad = runner.invoke(app, [*args[:-2], "--kind", "sigmoid"])
    assert bad.exit_code == 2 and "unknown relevance map kind" in bad.output

    corpus = tmp_path / "corpus"
    records = good_records(corpus, np.random.default_rng(1))
    (corpus / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    index_dir = tmp_path / "index"
    assert (
        runner.invoke(
            app, ["index", str(corpus / "c.jsonl"), "--model", str(tiny_clip), "--out", str(index_dir)]
        ).exit_code
        == 0
    )
    nomap = runner.invoke(app, ["search", str(index_dir), "dog", "--min-relevance", "0.5"])
    assert nomap.exit_code == 2 and "no relevance map" in nomap.output
    assert runner.invoke(app, ["recalibrate", str(index_dir), "--calibration", str(out)]).exit_code == 0
    every = runner.invoke(app, ["search", str(index_dir), "dog", "-k", "12", "--json"])
    records = [json.loads(line) for line in every.output.splitlines() if line.startswith("{")]
    assert len(records) == 12 and all(0 <= r["relevance"] <= 1 for r in records)
    t = sorted(r["relevance"] for r in records)[6]
    kept = runner.invoke(app, ["search", str(index_dir), "dog", "-k", "12", "--min-relevance", str(t)])
    assert kept.exit_code == 0, kept.output
    lines = [line for line in kept.output.splitlines() if "rel " in line]
    assert len(lines) == sum(r["relevance"] >= t for r in records) and 0 < len(lines) < 12
    assert runner.invoke(app, ["search", str(index_dir), "dog", "--min-relevance", "2"]).exit_code == 2


def test_bench_thresholds(tiny_clip, captions, tmp_path):
    config = B.BenchConfig(settings=(3,), progress=False, thresholds=(0.3, 0.5), depth=20)
    result, paths = B.bench(captions, [str(tiny_clip)], tmp_path / "out", config=config)
    study = result["runs"][0]["thresholds"][0]
    assert study["fit_queries"] + study["eval_queries"] == 48 and study["fit_queries"] > 10
    assert study["modalities"] == ["image", "multimodal", "text"]
    assert study["relevant"]["all"] == study["eval_queries"]
    rows = {(r["variant"], r["threshold"]): r for r in study["rows"]}
    for t in (0.3, 0.5):
        mapped = rows[("calibrated+map", t)]
        for variant in ("plain", "calibrated"):  # raw cut-offs matched to the mapped hit volume (ties aside)
            assert rows[(variant, t)]["hits"] >= mapped["hits"]
        per = mapped["per_modality"]
        assert per["all"]["returned"] == mapped["hits"] == sum(per[m]["returned"] for m in study["modalities"])
        # every mapped hit has relevance >= t, so their mean prediction does too; raw variants predict nothing
        assert all(per[m]["predicted"] >= t for m in per if per[m]["returned"])
        assert all(v["predicted"] is None for v in rows[("calibrated", t)]["per_modality"].values())
        assert per["all"]["relevant_returned"] <= study["relevant"]["all"]
    errors = study["calibration_error"]
    assert set(errors) == {"plain+map", "calibrated+map"}
    assert all(e is None or 0 <= e <= 1 for e in errors.values())  # None: nothing returned at any t
    # more demanding thresholds never return more
    hits = [rows[("calibrated+map", t)]["hits"] for t in sorted({r["threshold"] for r in study["rows"]})]
    assert hits == sorted(hits, reverse=True)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Relevance thresholds" in md and "calibrated+map | 0.5" in md
    assert list((tmp_path / "out" / "plots").glob("thresholds_*.png"))
    # the CLI option is checked
    bad = CliRunner().invoke(app, ["bench", str(captions), "--out", str(tmp_path / "x"), "--thresholds", "0.5,1.2"])
    assert bad.exit_code == 2 and "--thresholds" in bad.output


def test_server_min_relevance(tiny_clip, tmp_path):
    pytest.importorskip("fastapi", reason="the server needs the 'serve' extra")
    from fastapi.testclient import TestClient
    from server_helpers import build_served_index

    from mixsearch.server import create_app

    folder = build_served_index(tmp_path, tiny_clip)
    with TestClient(create_app([folder])) as client:
        answer = client.get("/api/search", params={"q": "dog", "min_relevance": 0.5})
        assert answer.status_code == 422 and "no relevance map" in answer.json()["detail"]
        index = ms.open_index(folder)
        rel = RelevanceMap("platt")
        rel.params_ = {POOLED: {"a": np.array([30.0]), "b": np.array([0.0])}}
        cal = index.calibrator.with_relevance(rel)
        index.recalibrate(cal)
        client.post("/reload")
        full = client.get("/api/search", params={"q": "dog", "k": 14}).json()["hits"]
        cut = client.get("/api/search", params={"q": "dog", "k": 14, "min_relevance": 0.5}).json()["hits"]
        assert [h["id"] for h in cut] == [h["id"] for h in full if h["relevance"] >= 0.5]
        assert client.get("/api/search", params={"q": "dog", "min_relevance": 3}).status_code == 422


def test_docs_relevance_example_runs_as_written(captions, tmp_path, monkeypatch):
    import re
    import shutil

    from mixsearch.calibration import shipped_calibration

    page = (Path(__file__).resolve().parents[1] / "docs" / "relevance.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "fit_relevance" in b]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flickr8k").symlink_to(captions)  # the example's dataset, in its layout
    shutil.copy(shipped_calibration("mixclip-flickr8k"), tmp_path / "means.safetensors")
    docs = [{"id": f"d{i}", "text": sentence(np.random.default_rng(i), 5)} for i in range(6)]
    docs += [{"id": "i0", "image": "caps/images/dev0.png"}]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    index, _ = ms.build_index("c.jsonl", "idx", "mixclip-flickr8k", calibration="means.safetensors", progress=False)
    ns = {"ms": ms, "index": index}
    exec(compile(block, "docs/relevance.md (example)", "exec"), ns)
    assert ns["cal"].relevance_.kind == "isotonic" and ms.load_calibration("means+rel.safetensors").relevance_
    assert all(0 <= h.relevance <= 1 for h in index.search("a dog"))

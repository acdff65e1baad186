"""The hnsw index kind (faiss HNSW): recall against exact, changes, filters, files, the engine and CLI."""

import json

import numpy as np
import pytest

pytest.importorskip("faiss", reason="the hnsw index kind needs faiss-cpu (pip install 'mixsearch[hnsw]')")

import mixsearch as ms  # noqa: E402
from mixsearch.index import ExactIndex, Filter, HnswIndex, VectorIndex, index_kind, load_index  # noqa: E402
from mixsearch.index import hnsw as hnsw_module  # noqa: E402

MODALITIES = np.array(["text", "image", "multimodal"])


def clustered(rng, n, d=32, centres=40, noise=0.6):
    c = rng.normal(size=(centres, d))
    x = c[rng.integers(0, centres, n)] + noise * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    vectors = clustered(rng, 4000)
    ids = [f"d{i}" for i in range(len(vectors))]
    fields = {"modality": MODALITIES[rng.integers(0, 3, len(vectors))]}
    queries = clustered(np.random.default_rng(1), 50)
    return vectors, ids, fields, queries


def test_registered_and_recall_against_exact(data):
    vectors, ids, fields, queries = data
    index = ms.index.build_index_of_kind("hnsw", vectors, ids, fields)
    assert index_kind("hnsw") is HnswIndex and isinstance(index, VectorIndex) and len(index) == len(ids)
    assert index.options == {"M": 32, "ef_construction": 100, "ef_search": 128, "dtype": "float32"}
    exact = ExactIndex(vectors, ids, fields)
    found, truth = index.search(queries, k=10), exact.search(queries, k=10)
    assert recall(found.ids, truth.ids) >= 0.9
    assert found.scores.shape == (50, 10) and np.all(np.diff(found.scores, axis=1) <= 1e-6)  # best first
    # the score of a hit is its inner product with the query
    row = ids.index(found.ids[0][0])
    assert found.scores[0, 0] == pytest.approx(float(queries[0] @ vectors[row]), abs=1e-5)


def test_save_load_memory_mapped_round_trip(data, tmp_path):
    vectors, ids, fields, queries = data
    index = HnswIndex.build(vectors, ids, fields, options={"M": 16, "ef_search": 40})
    index.save(tmp_path / "h")
    assert {p.name for p in (tmp_path / "h").iterdir()} == {
        "hnsw.faiss",
        "ids.json",
        "alive.npy",
        "fields.parquet",
        "options.json",
    }
    loaded = load_index(tmp_path / "h", "hnsw")
    assert loaded.options == index.options and loaded.ids == ids
    assert loaded.fields["modality"].tolist() == fields["modality"].tolist()
    before, after = index.search(queries, k=10), loaded.search(queries, k=10)
    assert before.ids == after.ids
    np.testing.assert_allclose(before.scores, after.scores, rtol=1e-6)
    # the vectors are a view into the mapped file, not a copy
    assert not loaded.vectors().flags.owndata
    np.testing.assert_array_equal(loaded.vectors(), vectors)
    with pytest.raises(ms.VectorIndexError, match="query dimension 5 does not match the index at"):
        loaded.search(np.ones((1, 5), np.float32))


def test_add_replaces_and_delete_removes(data, tmp_path):
    vectors, ids, fields, queries = data
    index = HnswIndex.build(vectors[:1000], ids[:1000], {"modality": fields["modality"][:1000]})
    # replace d0 with the vector of d999 (now two documents there), add a new one at queries[0]
    index.add(np.vstack([vectors[999], queries[0]]), ["d0", "new"], {"modality": np.array(["image", "text"])})
    assert len(index) == 1001 and index.ids[-2:] == ["d0", "new"] and "d0" not in index.ids[:-2]
    assert index.search(queries[:1], k=1).ids == [["new"]]
    assert set(index.search(vectors[999:1000], k=2).ids[0]) == {"d0", "d999"}
    assert index.fields["modality"][-2:].tolist() == ["image", "text"]
    assert index.delete(["new", "nope"]) == 1 and len(index) == 1000
    assert "new" not in index.search(queries[:1], k=20).ids[0]
    # saved with its tombstones, reopened the same; a loaded (mapped) index takes changes too
    index.save(tmp_path / "h")
    loaded = HnswIndex.load(tmp_path / "h")
    assert loaded.ids == index.ids and loaded.search(queries, k=5).ids == index.search(queries, k=5).ids
    loaded.add(queries[1:2], ["another"], {"modality": np.array(["text"])})
    assert loaded.search(queries[1:2], k=1).ids == [["another"]]
    with pytest.raises(ms.VectorIndexError, match="need the fields"):
        loaded.add(queries[:1], ["x"])
    with pytest.raises(ms.VectorIndexError, match="not unique"):
        loaded.add(queries[:2], ["x", "x"], {"modality": np.array(["text", "text"])})


def test_many_deletes_compact_the_graph(data):
    vectors, ids, fields, queries = data
    index = HnswIndex.build(vectors[:1000], ids[:1000], {"modality": fields["modality"][:1000]})
    gone = ids[:400]
    assert index.delete(gone) == 400
    # more than a quarter dead: rebuilt over the 600 live rows, ids and fields kept in order
    assert index._graph.ntotal == 600 and index._alive.all()
    assert index.ids == ids[400:1000] and index.fields["modality"].tolist() == fields["modality"][400:1000].tolist()
    exact = ExactIndex(vectors[400:1000], ids[400:1000])
    assert recall(index.search(queries, k=10).ids, exact.search(queries, k=10).ids) >= 0.9


@pytest.mark.parametrize("passing", ["modality", "few", "very_few", "none"])
def test_filters_return_k_whenever_k_qualify(data, passing, monkeypatch):
    vectors, ids, fields, queries = data
    fields = dict(fields)
    rng = np.random.default_rng(5)
    if passing == "few":  # ~1% of rows: under the exact threshold
        fields["modality"] = np.where(rng.random(len(ids)) < 0.01, "audio", fields["modality"])
    elif passing == "very_few":  # 3 rows: fewer than k
        fields["modality"] = fields["modality"].copy()
        fields["modality"][[7, 1500, 3999]] = "audio"
    wanted = {"modality": "image", "few": "audio", "very_few": "audio", "none": "video"}[passing]
    index = HnswIndex.build(vectors, ids, fields)
    allowed = fields["modality"] == wanted
    exact = ExactIndex(vectors, ids, fields)
    filt = Filter.of(wanted)
    found, truth = index.search(queries, k=10, filter=filt), exact.search(queries, k=10, filter=filt)
    assert all(len(f) == min(10, int(allowed.sum())) for f in found.ids)
    assert all(fields["modality"][ids.index(i)] == wanted for hits in found.ids for i in hits)
    if allowed.any():
        assert recall(found.ids, truth.ids) >= 0.9
    # and through the graph walk (the exact threshold lowered), a short walk is completed exactly
    monkeypatch.setattr(hnsw_module, "EXACT_ROWS", 0)
    monkeypatch.setattr(hnsw_module, "EXACT_FRACTION", 0.0)
    walked = index.search(queries, k=10, filter=filt)
    assert all(len(f) == min(10, int(allowed.sum())) for f in walked.ids)
    assert all(fields["modality"][ids.index(i)] == wanted for hits in walked.ids for i in hits)
    if allowed.any():
        assert recall(walked.ids, truth.ids) >= 0.9


def test_a_short_walk_falls_back_to_exact(data, monkeypatch):
    """When the graph walk returns fewer than k passing hits, the query is answered exactly."""
    vectors, ids, fields, queries = data
    index = HnswIndex.build(vectors, ids, fields)
    monkeypatch.setattr(hnsw_module, "EXACT_ROWS", 0)
    monkeypatch.setattr(hnsw_module, "EXACT_FRACTION", 0.0)
    real_walk = index._walk

    def short_walk(q, k, allowed, fraction=1.0):
        scores, rows = real_walk(q, k, allowed, fraction)
        scores[:, 5:], rows[:, 5:] = -np.inf, -1  # as if the walk had found only 5
        return scores, rows

    monkeypatch.setattr(index, "_walk", short_walk)
    filt = Filter.of("text")
    found = index.search(queries, k=10, filter=filt)
    truth = ExactIndex(vectors, ids, fields).search(queries, k=10, filter=filt)
    assert found.ids == truth.ids  # every query went exact: the same answer as the exact index


def test_options_are_checked(data):
    vectors, ids, fields, _ = data
    bad = [
        ({"m": 16}, "unknown hnsw index option m; known: M \\(default 32\\)"),
        ({"M": 2}, "M must be a whole number from 4 to 128, got 2"),
        ({"ef_search": 3.5}, "ef_search must be a whole number"),
        ({"ef_construction": True}, "ef_construction must be a whole number"),
        ({"dtype": "int8"}, "dtype must be one of float32, float16, got 'int8'"),
    ]
    for options, message in bad:
        with pytest.raises(ms.UsageError, match=message):
            HnswIndex.build(vectors[:10], ids[:10], options=options)


def test_float16_halves_the_vectors_and_keeps_recall(data, tmp_path):
    vectors, ids, fields, queries = data
    half = HnswIndex.build(vectors, ids, fields, options={"dtype": "float16"})
    full = HnswIndex.build(vectors, ids, fields)
    assert half.vectors().dtype == np.float16 and half.vectors().nbytes * 2 == full.vectors().nbytes
    truth = ExactIndex(vectors, ids).search(queries, k=10)
    assert recall(half.search(queries, k=10).ids, truth.ids) >= 0.9
    half.save(tmp_path / "half")
    full.save(tmp_path / "full")
    assert json.loads((tmp_path / "half" / "options.json").read_text())["dtype"] == "float16"
    size = lambda p: (p / "hnsw.faiss").stat().st_size  # noqa: E731
    # the graph's links are the same size; the vectors take half the bytes
    assert size(tmp_path / "full") - size(tmp_path / "half") >= 0.99 * vectors.nbytes / 2
    again = HnswIndex.load(tmp_path / "half")
    assert again.search(queries, k=10).ids == half.search(queries, k=10).ids
    # the filtered exact path reads float16 rows too
    found = again.search(queries, k=10, filter=Filter.of("multimodal"))
    assert all(fields["modality"][ids.index(i)] == "multimodal" for hits in found.ids for i in hits)


def test_missing_faiss_names_the_extra(monkeypatch, data):
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)  # importing it now raises ImportError
    vectors, ids, _, _ = data
    with pytest.raises(ms.MissingDependencyError, match=r"pip install 'mixsearch\[hnsw\]'"):
        HnswIndex.build(vectors[:10], ids[:10])


def same(hits, others) -> bool:
    """The same documents in the same order, scores equal up to float rounding."""
    return [h.id for h in hits] == [h.id for h in others] and np.allclose(
        [h.score for h in hits], [h.score for h in others], atol=1e-5
    )


def test_engine_build_open_search_recalibrate(tiny_clip, mixed_corpus, tmp_path):
    out = tmp_path / "idx"
    built, _ = ms.build_index(
        mixed_corpus, out, str(tiny_clip), kind="hnsw", index_options={"M": 8, "ef_search": 20}, progress=False
    )
    assert built.manifest.index.kind == "hnsw"
    assert built.manifest.index.options == {"M": 8, "ef_construction": 100, "ef_search": 20, "dtype": "float32"}
    reopened = ms.open_index(out)
    assert isinstance(reopened.index, HnswIndex)
    exact, _ = ms.build_index(mixed_corpus, tmp_path / "exact", str(tiny_clip), progress=False)
    # 12 documents: the walk sees them all, so hnsw answers as exact does
    assert same(reopened.search("a dog", k=5), exact.search("a dog", k=5))
    hits = reopened.search("a dog", k=12, modality="image")
    assert len(hits) == 4 and {h.modality for h in hits} == {"image"}
    view = reopened.with_calibration("none")
    assert isinstance(view.index, HnswIndex) and view.index.options == reopened.index.options
    assert same(view.search("a dog", k=5), exact.with_calibration("none").search("a dog", k=5))
    reopened.recalibrate("none")
    again = ms.open_index(out)
    assert again.manifest.index.kind == "hnsw" and again.manifest.calibration.method == "none"
    assert isinstance(again.index, HnswIndex) and again.index.options["M"] == 8
    assert same(again.search("a dog", k=5), view.search("a dog", k=5))


def test_bad_options_fail_before_encoding(tiny_clip, mixed_corpus, tmp_path, monkeypatch):
    enc = ms.load_encoder(str(tiny_clip))
    monkeypatch.setattr(enc, "_encode_batch", lambda *_: pytest.fail("encoded before refusing"))
    with pytest.raises(ms.UsageError, match="unknown hnsw index option"):
        ms.build_index(mixed_corpus, tmp_path / "idx", enc, kind="hnsw", index_options={"efs": 3}, progress=False)
    assert not (tmp_path / "idx").exists()


def test_cli_index_hnsw_info_search(tiny_clip, mixed_corpus, tmp_path):
    from test_cli import run

    out = tmp_path / "idx"
    code, text = run(
        "index", mixed_corpus, "--out", out, "--model", tiny_clip, "--index", "hnsw", "--index-option", "M=12"
    )
    assert code == 0, text
    code, text = run("info", out, "--json")
    assert code == 0, text
    assert json.loads(text)["index"]["kind"] == "hnsw" and json.loads(text)["index"]["options"]["M"] == 12
    code, text = run("search", out, "a dog", "-k", "3", "--json")
    assert code == 0, text
    assert [json.loads(line)["rank"] for line in text.strip().splitlines()] == [1, 2, 3]
    code, text = run(
        "index", mixed_corpus, "--out", tmp_path / "bad", "--model", tiny_clip, "--index", "hnsw",
        "--index-option", "dtype=int8",
    )  # fmt: skip
    assert code == 2 and "dtype must be one of float32, float16" in text


def test_ef_search_is_settable_and_filters_follow_changes(data, tmp_path):
    vectors, ids, fields, queries = data
    index = HnswIndex.build(vectors[:500], ids[:500], {"modality": fields["modality"][:500]})
    index.ef_search = 200
    assert index.options["ef_search"] == 200
    with pytest.raises(ms.UsageError, match="ef_search must be a whole number"):
        index.ef_search = 0
    index.save(tmp_path / "h")
    assert HnswIndex.load(tmp_path / "h").ef_search == 200
    # a filter's mask is cached; a change must not leave it stale
    image = Filter.of("image")
    before = index.search(queries[:1], k=500, filter=image).ids[0]
    index.add(queries[:1], ["fresh"], {"modality": np.array(["image"])})
    after = index.search(queries[:1], k=500, filter=image).ids[0]
    assert after[0] == "fresh" and len(after) == len(before) + 1
    index.delete([before[0]])
    assert before[0] not in index.search(queries[:1], k=500, filter=image).ids[0]


def test_where_on_missing_metadata_is_sql_null_as_in_the_exact_index(tmp_path):
    """A document without a field has NULL there: ``year > 2020`` must not pass it (numpy would
    have made it NaN, which SQL ranks above every number)."""
    import pyarrow as pa

    rng = np.random.default_rng(3)
    vectors = clustered(rng, 400)
    ids = [f"d{i}" for i in range(400)]
    years = pa.array([2000 + i % 40 if i % 3 else None for i in range(400)], pa.int64())
    fields = {"modality": np.array(["text"] * 400), "year": years}
    where = Filter.of(None, "year > 2020")
    truth = {ids[i] for i in range(400) if i % 3 and 2000 + i % 40 > 2020}
    for kind in (HnswIndex, ExactIndex):
        index = kind.build(vectors, ids, fields)
        for idx in (index, _saved_and_loaded(index, tmp_path / kind.kind)):
            hits = idx.search(vectors[:5], k=len(truth) + 50, filter=where)
            assert all(set(found) == truth for found in hits.ids), kind.kind


def _saved_and_loaded(index, folder):
    index.save(folder)
    return type(index).load(folder)

"""The embedding cache is not trusted blindly: a swapped, edited or NaN row is a miss and its item
is encoded again, a NaN from the model is refused by name, the cache stays under a size limit
(least recently used first), ``mixsearch cache`` shows, prunes and clears it, and the ONNX export
lives under the cache folder it was given."""

import logging
import os
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

import mixsearch as ms
from mixsearch.cli import app
from mixsearch.embedding import cache_info, content_key, embed, open_cache, parse_size, prune
from mixsearch.embedding.cache import EmbeddingCache, row_checksum

TEXTS = {
    "dog": "a brown dog runs on the beach",
    "ball": "a red ball in the green grass",
    "snow": "snow falls on a quiet street at night",
    "cat": "a grey cat sleeps on a sofa",
}


@pytest.fixture(scope="module")
def encoder(tiny_clip):
    return ms.load_encoder(str(tiny_clip), runtime="torch")


def docs():
    return [ms.Document(id=i, text=t) for i, t in TEXTS.items()]


def cache_file(folder, encoder):
    return folder / f"embeddings-{encoder.fingerprint}.sqlite"


def set_blob(path, text, blob):
    with sqlite3.connect(path) as db:
        db.execute("UPDATE embedding SET vector = ? WHERE key = ?", (blob, content_key("text", text)))


def blob_of(path, text):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT vector FROM embedding WHERE key = ?", (content_key("text", text),)).fetchone()[0]


def own_text_scores(index):
    """Each document's score on its own text, as a query (plain CLIP: the same vector, cosine 1)."""
    scores = {}
    for doc_id, text in TEXTS.items():
        hits = index.search(text, k=len(TEXTS))
        scores[doc_id] = next((h.score for h in hits if h.id == doc_id), None)
    return scores


def test_swapped_blobs_are_detected_and_encoded_again(encoder, tmp_path, caplog):
    cache = tmp_path / "cache"
    ms.build_index(docs(), tmp_path / "a", encoder, calibration="none", cache_dir=cache, progress=False)
    path = cache_file(cache, encoder)
    dog, ball = blob_of(path, TEXTS["dog"]), blob_of(path, TEXTS["ball"])
    set_blob(path, TEXTS["dog"], ball)
    set_blob(path, TEXTS["ball"], dog)
    with caplog.at_level(logging.WARNING, logger="mixsearch"):
        index, report = ms.build_index(
            docs(), tmp_path / "b", encoder, calibration="none", cache_dir=cache, progress=False
        )
    assert (report.encoded, report.from_cache) == (2, 2)
    assert "2 entries failed the integrity check" in caplog.text
    scores = own_text_scores(index)
    assert min(scores.values()) == pytest.approx(1.0, abs=1e-4), scores
    again = np.frombuffer(blob_of(path, TEXTS["dog"]), np.float32)  # stored again, sound
    np.testing.assert_allclose(again, np.frombuffer(dog, np.float32), atol=1e-5)


def test_a_nan_blob_is_encoded_again_and_the_document_found(encoder, tmp_path):
    cache = tmp_path / "cache"
    ms.build_index(docs(), tmp_path / "a", encoder, calibration="none", cache_dir=cache, progress=False)
    set_blob(cache_file(cache, encoder), TEXTS["snow"], np.full(encoder.dim, np.nan, np.float32).tobytes())
    index, report = ms.build_index(docs(), tmp_path / "b", encoder, calibration="none", cache_dir=cache, progress=False)
    assert report.encoded == 1 and len(index) == len(TEXTS)
    assert [h.id for h in index.search(TEXTS["snow"], k=1)] == ["snow"]
    assert min(own_text_scores(index).values()) == pytest.approx(1.0, abs=1e-4)


def test_a_nan_row_under_a_valid_checksum_is_a_miss_too(encoder, tmp_path):
    """What a bug writing the cache could leave: the finiteness check does not rely on the checksum."""
    cache = tmp_path / "cache"
    ms.build_index(docs(), tmp_path / "a", encoder, calibration="none", cache_dir=cache, progress=False)
    nan = np.full(encoder.dim, np.nan, np.float32).tobytes()
    key = content_key("text", TEXTS["cat"])
    with sqlite3.connect(cache_file(cache, encoder)) as db:
        db.execute(
            "UPDATE embedding SET vector = ?, checksum = ? WHERE key = ?",
            (nan, row_checksum(key, encoder.fingerprint, encoder.dim, False, nan), key),
        )
    index, report = ms.build_index(docs(), tmp_path / "b", encoder, calibration="none", cache_dir=cache, progress=False)
    assert report.encoded == 1 and [h.id for h in index.search(TEXTS["cat"], k=1)] == ["cat"]


def test_a_row_of_another_model_or_width_is_a_miss(encoder, tmp_path):
    vectors = encoder.encode(list(TEXTS.values()))
    keys = [content_key("text", t) for t in TEXTS.values()]
    cache = EmbeddingCache(tmp_path, encoder.fingerprint, encoder.dim)
    cache.put_many(keys, vectors, [False] * len(keys))
    cache.close()
    # another model's file copied in under this one's name: every checksum names the other model
    other = tmp_path / "embeddings-other.sqlite"
    os.replace(cache_file(tmp_path, encoder), other)
    cache = EmbeddingCache(tmp_path, "other", encoder.dim)
    assert len(cache.get_many(keys)) == 0
    cache.close()


def test_a_nan_from_the_encoder_is_refused_naming_the_document(encoder, tmp_path, monkeypatch):
    real = type(encoder)._encode_batch

    def poisoned(self, batch, modality):
        vectors, flags = real(self, batch, modality)
        vectors = np.array(vectors, dtype=np.float32)
        for row, item in enumerate(batch):
            if modality == "text" and "cat" in item:
                vectors[row] = np.nan
        return vectors, flags

    monkeypatch.setattr(type(encoder), "_encode_batch", poisoned)
    cache = tmp_path / "cache"
    index, report = ms.build_index(
        docs(), tmp_path / "idx", encoder, calibration="none", cache_dir=cache, progress=False
    )
    assert report.skipped_ids == ["cat"] and len(index) == len(TEXTS) - 1
    (problem,) = report.problems
    assert problem.doc_id == "cat" and "not finite" in problem.message and "not indexed" in problem.message
    stored = open_cache(encoder, cache)
    try:  # never stored: the next run asks the model again
        assert len(stored) == len(TEXTS) - 1
        assert content_key("text", TEXTS["cat"]) not in stored.get_many([content_key("text", TEXTS["cat"])])
        problems = []
        out = embed(encoder, [TEXTS["cat"], TEXTS["dog"]], "text", cache=stored, report=problems.append)
        assert out.ok.tolist() == [False, True] and out.encoded == 1 and out.from_cache == 1
        assert "not finite" in problems[0].message
        with pytest.raises(ValueError, match="non-finite"):
            stored.put_many(["k"], np.full((1, encoder.dim), np.inf), [False])
    finally:
        stored.close()


def test_a_0_3_cache_file_and_a_damaged_one_do_not_crash(encoder, tmp_path, caplog):
    path = cache_file(tmp_path, encoder)
    key = content_key("text", TEXTS["dog"])
    wrong = encoder.encode([TEXTS["ball"]])[0]  # a 0.3 row cannot prove it belongs to its key
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE embedding (key TEXT PRIMARY KEY, vector BLOB NOT NULL, truncated INTEGER NOT NULL)")
        db.execute("INSERT INTO embedding VALUES (?, ?, 0)", (key, wrong.tobytes()))
    with caplog.at_level(logging.WARNING, logger="mixsearch"):
        cache = EmbeddingCache(tmp_path, encoder.fingerprint, encoder.dim)
    assert "written by mixsearch 0.3" in caplog.text
    try:
        assert cache.get_many([key]) == {}
        out = embed(encoder, [TEXTS["dog"]], "text", cache=cache)
        assert out.encoded == 1 and (out.vectors[0] @ encoder.encode(TEXTS["dog"])) == pytest.approx(1.0, abs=1e-5)
    finally:
        cache.close()
    path.write_bytes(b"this is not a database at all" * 100)
    cache = EmbeddingCache(tmp_path, encoder.fingerprint, encoder.dim)
    assert len(cache) == 0
    cache.close()


def fill(root, n, dim=1024, fingerprint="m1", start=0, max_bytes=None):
    cache = EmbeddingCache(root, fingerprint, dim, max_bytes=max_bytes)
    keys = [f"k{i}" for i in range(start, start + n)]
    rng = np.random.default_rng(start)
    cache.put_many(keys, rng.normal(size=(n, dim)).astype(np.float32), [False] * n)
    with cache._db:  # used in order of their number, long ago
        cache._db.executemany(
            "UPDATE embedding SET used = ? WHERE key = ?", ((1000.0 + i, k) for i, k in enumerate(keys))
        )
    return cache, keys


def test_prune_respects_the_limit_and_keeps_recently_used_entries(tmp_path):
    cache, keys = fill(tmp_path, 400)
    assert cache.get_many(keys[:20]).keys() == set(keys[:20])  # the oldest twenty, used again now
    cache.close()
    export = tmp_path / "onnx" / "m0-v1"  # an ONNX export not used for longer than any entry
    export.mkdir(parents=True)
    (export / "text.onnx").write_bytes(b"\0" * 100_000)
    os.utime(export, (10, 10))
    before = cache_info(tmp_path).bytes
    limit = before // 3
    done = prune(tmp_path, limit)
    assert done.bytes_before == before and done.bytes_after <= limit < before
    assert done.exports == 1 and not export.exists() and done.entries > 0
    cache = EmbeddingCache(tmp_path, "m1", 1024, max_bytes=None)
    kept = cache.get_many(keys)
    cache.close()
    assert set(keys[:20]) <= kept.keys()  # recently used: kept
    assert keys[20] not in kept and keys[-1] in kept  # least recently used: gone first
    assert prune(tmp_path, None).entries == 0  # no limit: nothing to do


def test_a_build_prunes_the_cache_to_its_limit(tmp_path, monkeypatch):
    fill(tmp_path, 300)[0].close()
    full = cache_info(tmp_path).bytes
    monkeypatch.setenv("MIXSEARCH_CACHE_MAX_BYTES", str(full // 2))
    cache, new = fill(tmp_path, 10, fingerprint="m2", start=1000, max_bytes="default")  # limit: from the environment
    cache.get_many(new)
    cache.close()  # written to: pruned after the writes
    info = cache_info(tmp_path)
    assert info.bytes <= full // 2 and info.max_bytes == full // 2
    assert {f.fingerprint: f.entries for f in info.files}["m2"] == 10  # just used: kept
    monkeypatch.setenv("MIXSEARCH_CACHE_MAX_BYTES", "lots")
    with pytest.raises(ms.UsageError, match="MIXSEARCH_CACHE_MAX_BYTES"):
        EmbeddingCache(tmp_path, "m2", 1024)


def test_sizes_parse():
    assert parse_size("2GB") == 2 * 10**9 and parse_size("500 MB") == 5 * 10**8
    assert parse_size("1GiB") == 2**30 and parse_size("1234") == 1234 and parse_size("none") is None
    with pytest.raises(ms.UsageError, match="expected a size"):
        parse_size("two gigs")


def test_cli_cache_info_prune_clear(tmp_path):
    fill(tmp_path, 200)[0].close()
    fill(tmp_path, 50, fingerprint="m2")[0].close()
    (tmp_path / "onnx" / "m1-v1").mkdir(parents=True)
    (tmp_path / "onnx" / "m1-v1" / "text.onnx").write_bytes(b"\0" * 5000)
    runner = CliRunner()
    shown = runner.invoke(app, ["cache", "info", "--cache-dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "250 entries" in shown.output and "embeddings-m1.sqlite  200 entries" in shown.output
    assert "onnx        m1-v1  5.0 kB" in shown.output and "of 2.0 GB" in shown.output
    as_json = runner.invoke(app, ["cache", "info", "--cache-dir", str(tmp_path), "--json", "--max-size", "1MB"])
    import json

    record = json.loads(as_json.stdout)
    assert record["max_bytes"] == 10**6 and record["entries"] == 250 and len(record["onnx_exports"]) == 1
    limit = record["bytes"] // 2
    pruned = runner.invoke(app, ["cache", "prune", "--cache-dir", str(tmp_path), "--max-size", str(limit)])
    assert pruned.exit_code == 0 and "pruned" in pruned.output
    assert cache_info(tmp_path).bytes <= limit
    bad = runner.invoke(app, ["cache", "prune", "--cache-dir", str(tmp_path), "--max-size", "huge"])
    assert bad.exit_code == 2 and "error: cache size 'huge'" in bad.output
    cleared = runner.invoke(app, ["cache", "clear", "--cache-dir", str(tmp_path)])
    assert cleared.exit_code == 0 and "removed 2 embedding files" in cleared.output
    after = cache_info(tmp_path)
    assert after.files == [] and after.exports == [] and not list(tmp_path.glob("embeddings-*"))


def test_the_onnx_export_goes_under_the_given_cache_dir(tiny_clip, tmp_path, monkeypatch, caplog):
    pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    from mixsearch.encoders import onnx as onnx_module
    from mixsearch.encoders import transformers as tf_backend

    asked = []

    def cheap_export(model, fingerprint, text_inputs, pixel_values, threads=None, root=None):
        asked.append(onnx_module.export_folder(fingerprint, root))
        raise ms.ModelError("export skipped in this test")

    monkeypatch.setattr(tf_backend, "load_or_export", cheap_export)
    given = tmp_path / "given"
    with caplog.at_level(logging.WARNING, logger="mixsearch"):
        forced = ms.load_encoder(str(tiny_clip), runtime="onnx", cache_dir=given)
    assert asked[-1].parent == given / "onnx" and forced.runtime == "torch"
    # auto: loaded without a cache dir, the export follows the cache a build opens
    auto = ms.load_encoder(str(tiny_clip))
    open_cache(auto, tmp_path / "later").close()
    monkeypatch.setattr(tf_backend, "ONNX_MIN_ITEMS", 2)
    auto.expect(5, "text")
    assert asked[-1] == onnx_module.export_folder(auto.fingerprint, tmp_path / "later")
    assert str(tmp_path / "later" / "onnx") in str(asked[-1])

"""Issue 11 (core): document metadata as typed columns, SQL where filters, add/delete in place
(atomic under kill -9, cost of the change only), the segmented format, and float16 vectors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import random_unit, sentence, write_image
from typer.testing import CliRunner

import mixsearch as ms
from mixsearch import ExactIndex
from mixsearch.cli import app
from mixsearch.engine import store

QUERIES = ["dog beach ball", "snow child water", "red bike street"]


def write_corpus(folder: Path, name: str, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def records(folder: Path, prefix: str, n: int, seed: int) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        r = {"id": f"{prefix}{i}", "text": sentence(rng), "year": 2015 + i % 10, "source": ["wiki", "news"][i % 2]}
        if i % 3 == 0:
            r["image"] = str(write_image(folder / f"{prefix}{i}.png", seed * 100 + i))
        if i % 4 == 0:
            r["score"] = i / 4  # an integer-looking decimal and decimals: one DOUBLE column
        out.append(r)
    return out


@pytest.fixture
def built(tiny_clip, tmp_path):
    corpus = write_corpus(tmp_path / "a", "a", records(tmp_path / "a", "a", 12, 1))
    index, _ = ms.build_index(corpus, tmp_path / "idx", str(tiny_clip), progress=False)
    return index


def answers(folder: Path) -> dict:
    index = ms.open_index(folder)
    return {q: [(h.id, round(h.score, 5)) for h in index.search(q, k=30)] for q in QUERIES}


# -- metadata -------------------------------------------------------------------------------------


def test_metadata_round_trip_with_typed_columns(built):
    import pyarrow as pa

    schema = built.data.table.schema
    assert schema.field("year").type == pa.int64() and schema.field("source").type == pa.string()
    assert schema.field("score").type == pa.float64()
    assert built.fields() == {"modality": "VARCHAR", "year": "BIGINT", "source": "VARCHAR", "score": "DOUBLE"}
    hit = next(h for h in built.search("dog", k=12) if h.id == "a4")
    assert hit.metadata == {"year": 2019, "source": "wiki", "score": 1.0}
    assert hit.to_dict()["metadata"] == {"year": 2019, "source": "wiki", "score": 1.0}
    assert "score" not in next(h for h in built.search("dog", k=12) if h.id == "a1").metadata


def test_conflicting_and_reserved_fields_are_clear_errors(tiny_clip, tmp_path):
    bad = write_corpus(
        tmp_path, "bad", [{"id": "x", "text": "a", "year": 2020}, {"id": "y", "text": "b", "year": "old"}]
    )
    with pytest.raises(
        ms.InputError,
        match=r"field 'year' holds values of different kinds: an integer in document 'x'.*text in document 'y'",
    ):
        ms.build_index(bad, tmp_path / "i", str(tiny_clip), progress=False)
    assert not (tmp_path / "i").exists()
    problems = []
    reserved = write_corpus(tmp_path, "res", [{"id": "x", "text": "a", "modality": "text"}, {"id": "y", "text": "b"}])
    docs = list(ms.read_corpus(reserved, problems.append)) if hasattr(ms, "read_corpus") else None
    if docs is None:
        from mixsearch.ingest import read_corpus

        docs = list(read_corpus(reserved, problems.append))
    assert [d.id for d in docs] == ["y"] and "field 'modality' is reserved" in str(problems[0])


# -- where ----------------------------------------------------------------------------------------


def test_where_filters_numbers_strings_and_or_with_modality(built):
    docs = built.documents

    def expected(pred, modality=None):
        return {
            i
            for i, y, s, m in zip(docs["id"], docs["year"], docs["source"], docs["modality"])
            if pred(y, s) and (modality is None or m == modality)
        }

    cases = [
        ("year >= 2020", lambda y, s: y >= 2020, None),
        ("source = 'wiki' AND year < 2018", lambda y, s: s == "wiki" and y < 2018, None),
        ("source = 'news' OR year = 2015", lambda y, s: s == "news" or y == 2015, None),
        ("year BETWEEN 2016 AND 2019", lambda y, s: 2016 <= y <= 2019, "multimodal"),
        ("source IN ('wiki') -- a comment", lambda y, s: s == "wiki", "text"),
    ]
    for where, pred, modality in cases:
        want = expected(pred, modality)
        hits = built.search("dog beach", k=50, where=where, modality=modality)
        assert {h.id for h in hits} == want and want, where
    assert sorted(h.id for h in built.search(["a", "b"], k=3, where="year = 2016")[1]) == ["a1", "a11"]


def test_where_returns_k_hits_whenever_k_qualify(tmp_path):
    """A filter passing 1% of the rows still fills k: it applies before the top-k."""
    from mixsearch.index import Filter

    rng = np.random.default_rng(0)
    n = 20_000
    vectors = random_unit(rng, n, 16)
    bucket = np.arange(n) % 100
    index = ExactIndex.build(vectors, [str(i) for i in range(n)], {"bucket": bucket, "modality": np.full(n, "text")})
    found = index.search(vectors[:5], k=50, filter=Filter(where="bucket = 7"))
    assert all(len(ids) == 50 and all(int(i) % 100 == 7 for i in ids) for ids in found.ids)
    found = index.search(vectors[:1], k=500, filter=Filter(where="bucket = 7"))
    assert len(found.ids[0]) == 200  # all that qualify, no more


def test_bad_where_is_refused_before_any_encoding(built, monkeypatch):
    def no_encoding(*_):
        raise AssertionError("encoded before refusing")

    monkeypatch.setattr(built.encoder, "_encode_batch", no_encoding)
    cases = [
        ("colour = 'red'", r"unknown field 'colour'; known fields: modality VARCHAR, year BIGINT, source VARCHAR"),
        ("year = 'abc'", r"field 'year' is BIGINT, compared with text 'abc'"),
        ("source > 5", r"field 'source' is VARCHAR, compared with a number"),
        ("year", r"is a BIGINT, not a condition"),
        ("year > 1; DROP TABLE t", "must be one SQL condition"),
        ("year > 1 ORDER BY year", "must be one SQL condition"),
        ("(SELECT count(*) FROM read_text('/etc/passwd')) > 0", "may not hold a subquery"),
        ("year > (SELECT 1)", "may not hold a subquery"),
        ("year >", "not a valid SQL condition"),
        ("no_such_function(year)", "known fields"),
    ]
    for where, message in cases:
        with pytest.raises(ms.UsageError, match=message):
            built.search("dog", where=where)


def test_duckdb_runs_without_file_access():
    import duckdb

    from mixsearch.index.where import _connect

    con = _connect()
    with pytest.raises(duckdb.Error, match="disabled by configuration"):
        con.execute("SELECT * FROM read_text('/etc/passwd')")
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET enable_external_access = true")


# -- add / delete ---------------------------------------------------------------------------------


def test_add_replaces_and_adds_keeping_the_calibration(built, tiny_clip, tmp_path):
    folder = built.folder
    means = {r: m.copy() for r, m in built.calibrator.means_.items()}
    new = records(tmp_path / "b", "b", 5, 2) + [{"id": "a3", "text": "a replaced document", "year": 1999, "lang": "en"}]
    report = built.add(write_corpus(tmp_path / "b", "b", new), progress=False)
    assert (report.added, report.replaced) == (6, 1) and "kept as they were (not refitted)" in report.summary()
    index = ms.open_index(folder)
    assert len(index) == 17 and index.manifest.documents.total == 17
    for role, mean in means.items():
        np.testing.assert_array_equal(index.calibrator.means_[role], mean)
    hit = next(h for h in index.search("a replaced document", k=17) if h.id == "a3")
    assert hit.text == "a replaced document" and hit.metadata == {"year": 1999, "lang": "en"}
    assert [h.id for h in index.search("x", k=5, where="lang = 'en'")] == ["a3"]
    # the same documents built from scratch with the same calibration rank the same way
    ref, _ = ms.build_index(
        index.documents_as_corpus(tmp_path / "ref.jsonl")
        if hasattr(index, "documents_as_corpus")
        else _corpus_of(index, tmp_path),
        tmp_path / "ref",
        str(tiny_clip),
        calibration=built.calibrator,
        alpha=built.alpha,
        progress=False,
    )
    for q in QUERIES:
        got = {h.id: round(h.score, 4) for h in index.search(q, k=17)}
        want = {h.id: round(h.score, 4) for h in ref.search(q, k=17)}
        assert got == want, q
    assert built.delete(["b0", "b1", "nope"]) == 2 and len(built) == 15
    assert "b0" not in {h.id for h in ms.open_index(folder).search("dog", k=20)}
    assert only_current_files(folder)


def _corpus_of(index, tmp_path) -> Path:
    d = index.documents
    lines = []
    for row, doc_id in enumerate(d["id"]):
        r = {"id": doc_id}
        for col in d:
            if col not in ("id", "modality") and d[col][row] is not None:
                r[col] = d[col][row]
        lines.append(r)
    return write_corpus(tmp_path / "refc", "ref", lines)


def only_current_files(folder: Path) -> bool:
    manifest = store.read_manifest(folder)
    return {p.name for p in folder.iterdir()} == {*manifest.files.values(), store.MANIFEST, store.LOCK}


def test_add_writes_only_the_new_segment(built, tmp_path):
    folder = built.folder
    before = store.read_manifest(folder)
    old_vectors = store.files_of(folder, before)["index"] / "0.vectors.npy"
    inode = old_vectors.stat().st_ino
    built.add(write_corpus(tmp_path / "b", "b", records(tmp_path / "b", "b", 3, 2)), progress=False)
    after = store.read_manifest(folder)
    assert [s.rows for s in after.segments] == [12, 3]
    assert (store.files_of(folder, after)["index"] / "0.vectors.npy").stat().st_ino == inode  # linked, not copied
    assert not old_vectors.exists()  # the old generation's names are gone; the data lives on


def test_add_refuses_another_model_and_conflicting_metadata(built, tiny_clip_other, tmp_path):
    other = ms.open_index(built.folder, encoder=None)
    other._encoder = ms.load_encoder(str(tiny_clip_other))
    corpus = write_corpus(tmp_path / "b", "b", [{"id": "n", "text": "new"}])
    with pytest.raises(ms.CalibrationError, match="cannot query it"):
        ms.open_index(built.folder, encoder=str(tiny_clip_other)).add(corpus)
    bad = write_corpus(tmp_path / "c", "c", [{"id": "n", "text": "new", "year": "recent"}])
    with pytest.raises(ms.InputError, match="metadata field 'year' is string in the added documents but int64"):
        built.add(bad)
    assert len(ms.open_index(built.folder)) == 12


def test_cli_add_delete_search_where(built, tmp_path):
    runner = CliRunner()
    corpus = write_corpus(tmp_path / "b", "b", records(tmp_path / "b", "b", 4, 2))
    result = runner.invoke(app, ["add", str(built.folder), str(corpus)])
    assert result.exit_code == 0, result.output
    assert "added 4 documents" in result.output and "not refitted" in result.output
    (tmp_path / "ids.txt").write_text("b0\nb1\n\n")
    result = runner.invoke(app, ["delete", str(built.folder), "--ids-file", str(tmp_path / "ids.txt")])
    assert result.exit_code == 0 and "deleted 2 of 2" in result.output, result.output
    result = runner.invoke(app, ["delete", str(built.folder), "--ids", "b2,zz"])
    assert result.exit_code == 0 and "deleted 1 of 2" in result.output, result.output
    result = runner.invoke(app, ["search", str(built.folder), "dog", "--json", "-k", "20", "--where", "year >= 2020"])
    assert result.exit_code == 0, result.output
    hits = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert hits and all(h["metadata"]["year"] >= 2020 for h in hits)
    result = runner.invoke(app, ["search", str(built.folder), "dog", "--where", "colour = 1"])
    assert result.exit_code == 2 and "unknown field 'colour'" in result.output
    assert runner.invoke(app, ["delete", str(built.folder)]).exit_code == 2


def test_a_change_from_a_stale_index_is_refused(built):
    """Two handles on one folder: after one changes it, the other cannot write over that change."""
    stale = ms.open_index(built.folder)
    assert built.delete(["a0"]) == 1
    for change in (lambda: stale.delete(["a1"]), lambda: stale.with_calibration("none").persist()):
        with pytest.raises(ms.VectorIndexError, match="changed by someone else"):
            change()
    assert set(ms.open_index(built.folder).ids) == {f"a{i}" for i in range(1, 12)}


def test_compaction_when_most_rows_are_deleted(built):
    assert built.delete([f"a{i}" for i in range(7)]) == 7
    manifest = store.read_manifest(built.folder)
    assert manifest.compacted_at == manifest.generation and [s.rows for s in manifest.segments] == [5]
    assert set(ms.open_index(built.folder).ids) == {f"a{i}" for i in range(7, 12)}
    assert not (store.files_of(built.folder, manifest)["documents"] / "deleted.npy").exists()


def test_old_formats_open_and_take_an_add(tiny_clip, tmp_path):
    folder = tmp_path / "legacy"
    shutil.copytree(Path(__file__).parent / "data" / "legacy-v1", folder)
    index = ms.open_index(folder / "index")
    n = len(index)
    before = [h.id for h in index.search("a photo", k=3)]
    corpus = write_corpus(tmp_path / "b", "b", [{"id": "new1", "text": "a brand new text", "tag": "x"}])
    # the legacy index records the bundled model; add with it
    index.add(corpus, progress=False)
    again = ms.open_index(folder / "index")
    assert len(again) == n + 1 and again.manifest.format == store.FORMAT
    assert [h.id for h in again.search("a photo", k=3, where="tag IS NULL")] == before


# -- kill -9 --------------------------------------------------------------------------------------

CHILD = r"""
import os, signal, sys
import mixsearch as ms
from mixsearch.engine import durable, store, update
from mixsearch.index import exact

point, action, out, source = sys.argv[1:5]
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if point == "encoding":
    from mixsearch.encoders.transformers import TransformersEncoder
    real, calls = TransformersEncoder._encode_batch, []
    def second(self, batch, modality):
        calls.append(1)
        if len(calls) == 2:
            die()
        return real(self, batch, modality)
    TransformersEncoder._encode_batch = second
elif point == "index":  # new documents and segments written, the index not yet
    exact.ExactIndex.save = die
elif point == "manifest":  # every file written, the manifest rename not done
    def half(path, data):
        path.with_name(f".{path.name}.{os.getpid()}.tmp").write_text('{"format": "mixsearch-ind')
        die()
    durable.write_json_atomic = half
elif point == "cleanup":  # committed, the old generation not yet removed
    store.remove_stale = die
index = ms.open_index(out)
if action == "add":
    index.add(source, progress=False, cache_dir=os.environ["COLD"])
else:
    index.delete(source.split(","))
"""


@pytest.mark.slow
@pytest.mark.parametrize("action", ["add", "delete"])
def test_kill_9_during_an_add_or_delete_loses_nothing(tiny_clip, tmp_path, action):
    a = write_corpus(tmp_path / "a", "a", records(tmp_path / "a", "a", 8, 1))
    b = write_corpus(tmp_path / "b", "b", records(tmp_path / "b", "b", 6, 2) + [{"id": "a2", "text": "changed"}])
    source = str(b) if action == "add" else "a1,a2,a5"
    ref = ms.build_index(a, tmp_path / "ref", str(tiny_clip), progress=False)[0]
    ref.add(b, progress=False) if action == "add" else ref.delete(source.split(","))
    ref_new = answers(tmp_path / "ref")
    points = ("encoding", "index", "manifest", "cleanup") if action == "add" else ("index", "manifest", "cleanup")
    for point in points:
        out = tmp_path / f"idx-{point}"
        ms.build_index(a, out, str(tiny_clip), progress=False)
        ref_old = answers(out)
        env = {**os.environ, "COLD": str(tmp_path / f"cold-{point}")}
        done = subprocess.run(
            [sys.executable, "-c", CHILD, point, action, str(out), source],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == -9, (point, done.stderr[-2000:])
        assert answers(out) == (ref_new if point == "cleanup" else ref_old), point
        index = ms.open_index(out)
        index.add(b, progress=False) if action == "add" else index.delete(source.split(","))
        assert answers(out) == ref_new and only_current_files(out), point


# -- float16 --------------------------------------------------------------------------------------


def test_float16_round_trip_and_rankings_agree(tmp_path):
    rng = np.random.default_rng(5)
    vectors, queries = random_unit(rng, 3000, 32), random_unit(rng, 20, 32)
    ids = [str(i) for i in range(len(vectors))]
    full = ExactIndex.build(vectors, ids)
    half = ExactIndex.build(vectors, ids, options={"dtype": "float16"})
    assert half.options == {"dtype": "float16"} and half.vectors.dtype == np.float16
    half.save(tmp_path / "h")
    loaded = ExactIndex.load(tmp_path / "h")
    assert (
        loaded.vectors.dtype == np.float16 and (tmp_path / "h" / "0.vectors.npy").stat().st_size < vectors.nbytes * 0.51
    )
    a, b = full.search(queries, k=10), loaded.search(queries, k=10)
    overlap = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a.ids, b.ids)])
    assert overlap >= 0.95 and np.abs(a.scores - b.scores).max() < 2e-3
    with pytest.raises(ms.UsageError, match="dtype must be one of float32, float16"):
        ExactIndex.build(vectors, ids, options={"dtype": "int8"})


def test_cli_index_dtype_float16(tiny_clip, tmp_path):
    corpus = write_corpus(tmp_path / "a", "a", records(tmp_path / "a", "a", 6, 1))
    result = CliRunner().invoke(
        app, ["index", str(corpus), "--out", str(tmp_path / "i"), "--model", str(tiny_clip), "--dtype", "float16"]
    )
    assert result.exit_code == 0, result.output
    index = ms.open_index(tmp_path / "i")
    assert index.manifest.index.options == {"dtype": "float16"} and index.index.dtype == np.float16
    index.add(write_corpus(tmp_path / "b", "b", records(tmp_path / "b", "b", 2, 2)), progress=False)
    again = ms.open_index(tmp_path / "i")
    assert again.index.dtype == np.float16 and len(again) == 8
    view = again.with_calibration("none")
    assert view.index.dtype == np.float16  # the option is reused whenever the index is rebuilt


# -- the document table kept in Arrow across a change (issue 19) ------------------------------------


def same_state_as_on_disk(index) -> None:
    """The index a change returns (its table kept in memory, nothing read back) is the one a fresh open reads."""
    fresh = ms.open_index(index.folder)
    assert index.data.table.equals(fresh.data.table)
    assert index.ids == fresh.ids and list(index.modality) == list(fresh.modality)
    assert index.manifest.documents == fresh.manifest.documents
    assert store.ids_checksum(fresh.ids) == fresh.manifest.ids_sha256 == store.ids_checksum(index.data.table["id"])
    for q in QUERIES:
        assert [(h.id, round(h.score, 5), h.metadata) for h in index.search(q, k=30)] == [
            (h.id, round(h.score, 5), h.metadata) for h in fresh.search(q, k=30)
        ]


def test_changes_keep_the_table_in_memory_as_a_fresh_open_reads_it(built, tmp_path):
    # new metadata fields, an integer field given decimals, a replaced id: the schema merges as on disk
    new = records(tmp_path / "b", "b", 4, 2) + [{"id": "a3", "text": "a replaced text", "year": 1999, "lang": "en"}]
    new[0]["year"] = 2020.5
    built.add(write_corpus(tmp_path / "b", "b", new), progress=False)
    same_state_as_on_disk(built)
    assert built.manifest.documents.total == 16 and "a3" in built.ids
    assert built.delete(["b1", "a5"]) == 2
    same_state_as_on_disk(built)
    assert built.delete([f"a{i}" for i in range(12)]) == 11  # most rows deleted: the compacted segment is read
    assert store.read_manifest(built.folder).compacted_at is not None
    same_state_as_on_disk(built)


def test_a_failed_add_leaves_the_index_in_memory_as_it_was(built, tmp_path, monkeypatch):
    before = {q: [h.id for h in built.search(q, k=12)] for q in QUERIES}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(store, "publish", fail)
        with pytest.raises(OSError, match="disk full"):
            built.add(write_corpus(tmp_path / "b", "b", records(tmp_path / "b", "b", 3, 2)), progress=False)
    assert len(built) == len(built.index) == 12 and built.index.ids == [f"a{i}" for i in range(12)]
    assert {q: [h.id for h in built.search(q, k=12)] for q in QUERIES} == before
    built.add(write_corpus(tmp_path / "c", "c", records(tmp_path / "c", "c", 2, 3)), progress=False)
    assert len(built) == 14
    same_state_as_on_disk(built)


@pytest.mark.parametrize(
    "ids",
    [
        [],
        ["a"],
        ["d0", "d1", "é日😀", "a b", "x\x7fy", "/p/q.png"],
        ['say "hi"', "back\\slash", "d2"],  # escaped by json: its own path
        ["tab\there", "line\nbreak"],
    ],
)
def test_the_arrow_ids_checksum_is_jsons(ids):
    import pyarrow as pa

    want = store.ids_checksum(ids)
    column = pa.array(ids, pa.string())
    assert store.ids_checksum(column) == want
    halves = pa.chunked_array([column.slice(0, len(ids) // 2), column.slice(len(ids) // 2)], pa.string())
    assert store.ids_checksum(halves) == want
    if len(ids) > 2:
        assert store.ids_checksum(column.slice(1, 2)) == store.ids_checksum(ids[1:3])

"""The milvus index kind on Milvus Lite (one database file per module) and on a real Milvus server
(standalone, started once per session from PyPI's ``milvus``; or ``MIXSEARCH_MILVUS_URI``): the
where -> Milvus translation, filtered search against exact search + DuckDB, builds, recalibration,
generations, failures, index types, and the command line."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mixsearch.errors import MissingDependencyError, UsageError, VectorIndexError
from mixsearch.index import ExactIndex, Filter

pytest.importorskip("sqlglot", reason="the where -> Milvus translation needs sqlglot (pip install 'mixsearch[milvus]')")
needs_milvus = pytest.mark.skipif(
    importlib.util.find_spec("pymilvus") is None or importlib.util.find_spec("milvus_lite") is None,
    reason="pymilvus and milvus-lite are not installed (pip install 'mixsearch[milvus]')",
)
FIELDS = {"id", "modality", "year", "source", "score", "flag"}


# -- the translation ---------------------------------------------------------------------------------

TRANSLATIONS = [
    ("year = 2020", "year == 2020"),
    ("year <> 2020", "year != 2020"),
    ("year != 2020", "year != 2020"),
    ("year >= 2020 AND source = 'wiki'", '(year >= 2020 and source == "wiki")'),
    ("year < 2000 OR year > 2010", "(year < 2000 or year > 2010)"),
    ("2000 < year", "year > 2000"),
    ("score <= -1.5", "score <= -1.5"),
    ("score > 1e3", "score > 1000.0"),
    ("NOT year > 5", "year <= 5"),
    ("NOT (year = 1 AND source = 'x')", '(year != 1 or source != "x")'),
    ("NOT (year = 1 OR source = 'x')", '(year != 1 and source != "x")'),
    ("NOT NOT year = 1", "year == 1"),
    ("source IN ('a', 'b')", 'source in ["a", "b"]'),
    ("source NOT IN ('a', 'b')", '(source is not null and source not in ["a", "b"])'),
    ("year IN (1, 2)", "year in [1, 2]"),
    ("year BETWEEN 2000 AND 2010", "(year >= 2000 and year <= 2010)"),
    ("year NOT BETWEEN 2000 AND 2010", "(year < 2000 or year > 2010)"),
    ("source LIKE 'wi%'", 'source like "wi%"'),
    ("source NOT LIKE 'w_ki'", '(source is not null and not (source like "w_ki"))'),
    ("source IS NULL", "source is null"),
    ("source IS NOT NULL", "source is not null"),
    ("flag", "flag == true"),
    ("NOT flag", "flag == false"),
    ("flag = TRUE", "flag == true"),
    ("flag IS TRUE", "flag == true"),
    ("flag IS NOT FALSE", "(flag is null or flag != false)"),
    ("source = 'it''s \"quoted\" \\ here'", 'source == "it\'s \\"quoted\\" \\\\ here"'),
    ("source = 'café'", 'source == "café"'),
    ('"year" = 1', "year == 1"),
    ("year = score", "year == score"),
    ("id = 'd1'", 'id == "d1"'),
    ("(year = 1)", "year == 1"),
]


@pytest.mark.parametrize(("sql", "expected"), TRANSLATIONS)
def test_where_translation(sql, expected):
    from mixsearch.index.milvus_filter import where_to_milvus

    assert where_to_milvus(sql, FIELDS) == expected


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("lower(source) = 'x'", "LOWER(source)"),
        ("year + 1 > 2", "year + 1"),
        ("source ILIKE 'x'", "ILIKE"),
        ("year IN (SELECT 1)", "subquery"),
        ("year = NULL", "IS NULL"),
        ("colour = 'red'", "unknown field 'colour'"),
        ("t.year = 1", "t.year"),
        ("1 = 1", "no field"),
        ("year >", "not a valid SQL condition"),
        ("CAST(year AS TEXT) = '1'", "CAST"),
    ],
)
def test_untranslatable_where_is_a_usage_error_naming_the_construct(sql, named):
    from mixsearch.index.milvus_filter import where_to_milvus

    with pytest.raises(UsageError) as err:
        where_to_milvus(sql, FIELDS)
    assert named.lower() in str(err.value).lower()
    assert sql in str(err.value)


def test_where_translation_with_null_flags():
    """On a server without nullable fields: IS NULL reads the flag, and every comparison of a field
    is guarded by it (a null's stand-in value is never compared)."""
    from mixsearch.index.milvus_filter import where_to_milvus

    flags = {"year": "year__null", "source": "source__null", "flag": "flag__null"}
    for sql, expected in [
        ("year IS NULL", "year__null == true"),
        ("year IS NOT NULL", "year__null == false"),
        ("year >= 2020", "(year__null == false and year >= 2020)"),
        ("NOT year > 5", "(year__null == false and year <= 5)"),
        ("source NOT IN ('a')", '(source__null == false and source not in ["a"])'),
        ("source LIKE 'w%'", '(source__null == false and source like "w%")'),
        ("flag IS NOT TRUE", "(flag__null == true or flag != true)"),
        ("NOT flag", "(flag__null == false and flag == false)"),
        ("year = score", "(year__null == false and year == score)"),
        ("id = 'd1'", 'id == "d1"'),
    ]:
        assert where_to_milvus(sql, FIELDS, flags) == expected, sql


# -- the index on Milvus Lite and on a Milvus server ------------------------------------------------


@pytest.fixture(scope="module")
def lite_uri(tmp_path_factory) -> str:
    """One Milvus Lite database for the module (each index uses its own collections)."""
    return str(tmp_path_factory.mktemp("milvus") / "milvus.db")


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A Milvus server's uri: ``MIXSEARCH_MILVUS_URI`` if set, else Milvus standalone started here
    (PyPI ``milvus``, ``pip install 'mixsearch[milvus-server]'``) and stopped at the end."""
    from milvus_server import URI_ENV, milvus_standalone

    if os.environ.get(URI_ENV):
        yield os.environ[URI_ENV]
        return
    if importlib.util.find_spec("milvus") is None:
        pytest.skip(f"no Milvus server: set {URI_ENV}, or pip install 'mixsearch[milvus-server]' (Linux x86-64)")
    with milvus_standalone(tmp_path_factory.mktemp("milvus-server")) as uri:
        yield uri


@pytest.fixture(scope="module", params=["lite", pytest.param("server", marks=pytest.mark.slow)])
def milvus_uri(request) -> str:
    """Milvus Lite, and a Milvus server (slow: each save flushes and indexes a sealed segment, ~6 s)."""
    return request.getfixturevalue("lite_uri" if request.param == "lite" else "milvus_server")


def collections(uri: str) -> list[str]:
    from mixsearch.index.milvus import connect

    return sorted(connect(uri).list_collections())


def documents(n: int = 60, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    fields = {
        "modality": np.array(["text", "image", "multimodal"] * (n // 3)),
        "year": np.array([None if i % 7 == 0 else 1990 + i for i in range(n)], dtype=object),
        "source": np.array([None if i % 5 == 0 else ["wiki", "news", "blog"][i % 3] for i in range(n)], dtype=object),
        "score": rng.random(n),
        "flag": np.array([None if i % 11 == 0 else bool(i % 2) for i in range(n)], dtype=object),
    }
    return x, [f"d{i}" for i in range(n)], fields


WHERES = [
    "year >= 2020",
    "year != 2000",
    "NOT year > 2010",
    "source = 'wiki' AND score > 0.3",
    "source NOT IN ('wiki', 'news')",
    "NOT (source = 'wiki' OR year < 2000)",
    "NOT (source = 'blog' AND year < 2030)",
    "year NOT BETWEEN 2000 AND 2020",
    "source LIKE 'n%'",
    "source NOT LIKE '%g'",
    "source IS NULL OR year IS NULL",
    "flag",
    "NOT flag",
    "flag IS NOT TRUE",
    "id IN ('d3', 'd4', 'd5') OR score < 0.1",
]


@needs_milvus
def test_filtered_search_matches_exact_search_over_the_sql_rows(milvus_uri, tmp_path):
    """Each where clause: Milvus returns what exact search over the rows DuckDB's SQL keeps returns."""
    import duckdb
    import pyarrow as pa

    from mixsearch.index.milvus import MilvusIndex

    x, ids, fields = documents()
    index = MilvusIndex.build(x, ids, fields, options={"uri": milvus_uri, "index_type": "FLAT"})
    index.save(tmp_path / "index-1")
    index = MilvusIndex.load(tmp_path / "index-1")
    exact = ExactIndex.build(x, ids, fields)
    sql = duckdb.connect()
    sql.register(
        "docs",
        pa.table({"id": ids, "row": np.arange(len(ids)), **{k: pa.array(v.tolist()) for k, v in fields.items()}}),
    )
    queries = x[:4] + 0.01
    legacy = index._milvus().legacy  # a server before 2.5: nulls as flags, LIKE by prefix only
    for where in WHERES:
        if legacy and "'%" in where:
            with pytest.raises(VectorIndexError, match="only prefix pattern"):
                index.search(queries, 8, Filter(where=where))
            continue
        rows = sql.sql(f"SELECT row FROM docs WHERE {where}").fetchnumpy()["row"]
        allowed = np.isin(np.arange(len(ids)), rows)
        assert 0 < allowed.sum() < len(ids), where  # every clause tells rows apart
        for modality in (None, frozenset({"text", "image"})):
            mask = allowed & (True if modality is None else np.isin(fields["modality"], sorted(modality)))
            want_scores, want_rows = exact.search_rows(queries, 8, mask)
            found = index.search(queries, 8, Filter(modality=modality, where=where))
            for q in range(len(queries)):
                want = [ids[r] for r in want_rows[q] if r >= 0]
                assert found.ids[q] == want, (where, modality)
                np.testing.assert_allclose(found.scores[q][: len(want)], want_scores[q][: len(want)], atol=1e-5)
    with pytest.raises(UsageError, match="unknown field 'colour'"):
        index.search(queries, 3, Filter(where="colour = 'red'"))


@needs_milvus
def test_add_and_delete_are_searchable_at_once_and_saved_as_a_new_collection(milvus_uri, tmp_path):
    from mixsearch.index.milvus import MilvusIndex

    x, ids, fields = documents(30)
    index = MilvusIndex.build(x, ids, fields, options={"uri": milvus_uri, "index_type": "FLAT"})
    index.save(tmp_path / "index-1")
    first = index.collection
    assert index.delete(["d0", "d1", "nope"]) == 2
    index.add(-x[:2], ["d2", "new"], {k: v[:2] for k, v in fields.items()})  # d2 replaced, new added
    assert len(index) == 29
    found = index.search(-x[:2], 3)
    assert [ids[0] for ids in found.ids] == ["d2", "new"] and not {"d0", "d1"} & {*found.ids[0], *found.ids[1]}
    np.testing.assert_allclose(found.scores[:, 0], 1.0, atol=1e-5)
    with pytest.raises(VectorIndexError, match="field 'year' holds VARCHAR values, the index INT64"):
        index.add(x[:1], ["bad"], {**{k: v[:1] for k, v in fields.items()}, "year": np.array(["1999"], dtype=object)})
    index.save(tmp_path / "index-2")
    assert index.collection != first and first in collections(milvus_uri)  # the old one stays until discarded
    reopened = MilvusIndex.load(tmp_path / "index-2")
    assert len(reopened) == 29
    assert reopened.search(-x[:2], 3).ids == found.ids
    assert reopened.search(x[1:2], 30).ids[0].count("d1") == 0
    MilvusIndex.discard(tmp_path / "index-1")
    assert first not in collections(milvus_uri)


@needs_milvus
def test_options_are_checked_and_a_token_is_never_an_option(lite_uri):
    from mixsearch.index.milvus import MilvusIndex

    x, ids, fields = documents(6)
    for options, message in [
        ({}, "needs the option uri"),
        ({"uri": lite_uri, "token": "secret"}, "MIXSEARCH_MILVUS_TOKEN"),
        ({"uri": lite_uri, "colour": 1}, "unknown milvus index option colour"),
        ({"uri": lite_uri, "index_type": "FAST"}, "index_type 'FAST'"),
        ({"uri": lite_uri, "M": 0}, "M must be a positive"),
        ({"uri": "milvus.sqlite"}, "ending in .db"),
        ({"uri": lite_uri, "collection": "9 bad"}, "collection name"),
    ]:
        with pytest.raises(UsageError, match=message):
            MilvusIndex.build(x, ids, fields, options=options)
    with pytest.raises(VectorIndexError, match="field 'bad name'"):
        MilvusIndex.build(x, ids, {"bad name": np.arange(6)}, options={"uri": lite_uri})
    index = MilvusIndex.build(x, ids, fields, options={"uri": "relative.db", "index_type": "hnsw", "ef": 64})
    assert index.options["uri"] == str(Path("relative.db").resolve())
    assert index.options["index_type"] == "HNSW"


@needs_milvus
@pytest.mark.parametrize("index_type", ["HNSW", "IVF_FLAT"])
def test_approximate_index_types_find_what_exact_search_finds(milvus_uri, index_type, tmp_path):
    """A server builds HNSW and IVF (Lite answers them exactly); with ef >= k or every list probed
    the 10 nearest are exact search's, filtered or not."""
    from mixsearch.index.milvus import MilvusIndex

    if index_type == "IVF_FLAT" and milvus_uri.endswith(".db"):
        pytest.skip("Milvus Lite 3.2's IVF_FLAT misses neighbours even with every list probed")
    x, ids, fields = documents(300, d=16, seed=3)
    search = {"ef": 64} if index_type == "HNSW" else {"nlist": 16, "nprobe": 16}
    index = MilvusIndex.build(x, ids, fields, options={"uri": milvus_uri, "index_type": index_type, **search})
    index.save(tmp_path / "index-1")
    index = MilvusIndex.load(tmp_path / "index-1")
    exact = ExactIndex.build(x, ids, fields)
    queries = x[:20] + 0.05
    for filter in (None, Filter(where="year >= 2000 OR source IS NULL")):
        assert index.search(queries, 10, filter).ids == exact.search(queries, 10, filter).ids


def test_a_missing_pymilvus_names_the_extra(monkeypatch):
    import sys

    from mixsearch.index import milvus

    monkeypatch.setitem(sys.modules, "pymilvus", None)
    monkeypatch.setattr(milvus, "_clients", {})
    with pytest.raises(MissingDependencyError, match=r"mixsearch\[milvus\]"):
        milvus.connect("/tmp/x.db")


# -- through the engine ------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@needs_milvus
def test_build_search_recalibrate_like_the_exact_index(tiny_clip, mixed_corpus, milvus_uri, tmp_path):
    from mixsearch import Calibrator, build_index, load_encoder, open_index
    from mixsearch.index.milvus import MilvusIndex

    enc = load_encoder(str(tiny_clip))
    options = {"uri": milvus_uri, "index_type": "FLAT"}
    idx, report = build_index(mixed_corpus, tmp_path / "m", enc, kind="milvus", index_options=options, progress=False)
    exact, _ = build_index(mixed_corpus, tmp_path / "e", enc, progress=False)
    assert report.indexed == 13
    assert sorted(p.name for p in (tmp_path / "m" / "index-1").iterdir()) == ["milvus.json"]
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["index"]["kind"] == "milvus" and manifest["index"]["options"]["uri"] == milvus_uri
    stem = manifest["index"]["options"]["collection"]
    assert f"{stem}_g1" in collections(milvus_uri)

    def same(a, b, **kwargs):
        for query in ("dog beach", "red ball snow"):
            ha, hb = a.search(query, k=12, **kwargs), b.search(query, k=12, **kwargs)
            assert [h.id for h in ha] == [h.id for h in hb]
            np.testing.assert_allclose([h.score for h in ha], [h.score for h in hb], atol=1e-5)
        return ha

    reopened = open_index(tmp_path / "m", encoder=enc)
    assert isinstance(reopened.index, MilvusIndex)
    same(reopened, exact)
    hits = same(reopened, exact, modality=["image", "multimodal"])
    assert {h.modality for h in hits} == {"image", "multimodal"} and len(hits) == 8

    view = reopened.with_calibration("none")  # a view: searched in memory, no collection made
    assert view.index.collection is None
    assert f"{stem}_g2" not in collections(milvus_uri)
    same(view, exact.with_calibration("none"))

    means = {"query": np.ones((2, enc.dim)), "text": np.eye(enc.dim)[:3], "image": np.eye(enc.dim)[3:6]}
    cal = Calibrator(fitted_for=enc.info()).fit(means)
    before = [h.score for h in reopened.search("dog beach", k=12)]
    stale = open_index(tmp_path / "m", encoder=enc)
    reopened.recalibrate(cal, alpha=0.3)
    with pytest.raises(VectorIndexError, match="is gone: the index was rebuilt or recalibrated"):
        stale.search("dog beach")  # its generation's collection was dropped
    exact.recalibrate(cal, alpha=0.3)
    assert [h.score for h in reopened.search("dog beach", k=12)] != before
    same(reopened, exact)
    same(open_index(tmp_path / "m", encoder=enc), exact)
    assert f"{stem}_g2" in collections(milvus_uri) and f"{stem}_g1" not in collections(milvus_uri)
    assert not (tmp_path / "m" / "index-1").exists()

    # add and delete through the engine: a new collection per change, the same answers as exact
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "new", "text": "a dog on the beach"}) + "\n")
    for index in (reopened, exact):
        assert index.add(extra, progress=False).added == 1
        assert index.delete(["t0", "i1"]) == 2
    assert len(reopened) == len(exact) == 12 and reopened.manifest.documents == exact.manifest.documents
    same(reopened, exact)
    same(open_index(tmp_path / "m", encoder=enc), exact)
    assert f"{stem}_g4" in collections(milvus_uri) and f"{stem}_g3" not in collections(milvus_uri)


@needs_milvus
def test_a_failure_mid_upsert_leaves_the_old_generation_searchable(
    tiny_clip, mixed_corpus, milvus_uri, tmp_path, monkeypatch
):
    from mixsearch import build_index, load_encoder, open_index
    from mixsearch.index import milvus

    enc = load_encoder(str(tiny_clip))
    options = {"uri": milvus_uri, "index_type": "FLAT", "collection": "failing"}
    idx, _ = build_index(mixed_corpus, tmp_path / "m", enc, kind="milvus", index_options=options, progress=False)
    before = [(h.id, h.score) for h in idx.search("dog beach", k=12)]
    state = snapshot(tmp_path / "m")
    monkeypatch.setattr(milvus, "INSERT_ROWS", 5)
    real, inserts = milvus._Calls.__call__, []

    def failing(self, what, method, *args, **kwargs):
        if method == "insert":
            inserts.append(len(args[1]))
            if len(inserts) == 2:
                raise VectorIndexError(f"Milvus at {self.uri}: connection lost (simulated)")
        return real(self, what, method, *args, **kwargs)

    monkeypatch.setattr(milvus._Calls, "__call__", failing)
    with pytest.raises(VectorIndexError, match="simulated"):
        idx.recalibrate("none")
    assert inserts == [5, 5]  # it failed half-way through the upsert
    assert snapshot(tmp_path / "m") == state
    assert collections(milvus_uri).count("failing_g1") == 1 and "failing_g2" not in collections(milvus_uri)
    monkeypatch.setattr(milvus._Calls, "__call__", real)
    assert [(h.id, h.score) for h in open_index(tmp_path / "m", encoder=enc).search("dog beach", k=12)] == before
    idx.recalibrate("none")  # and the next try succeeds, at the generation that failed
    assert collections(milvus_uri).count("failing_g2") == 1 and "failing_g1" not in collections(milvus_uri)


@needs_milvus
def test_an_unreachable_uri_fails_first_naming_it_and_changes_nothing(tiny_clip, mixed_corpus, tmp_path):
    from mixsearch import build_index, load_encoder

    enc = load_encoder(str(tiny_clip))
    build_index(mixed_corpus, tmp_path / "idx", enc, calibration="none", progress=False)
    state = snapshot(tmp_path / "idx")
    bad = "http://127.0.0.1:1"
    with pytest.raises(VectorIndexError, match=r"cannot reach Milvus at http://127\.0\.0\.1:1"):
        build_index(mixed_corpus, tmp_path / "idx", enc, kind="milvus", index_options={"uri": bad, "timeout": 3})
    assert snapshot(tmp_path / "idx") == state
    with pytest.raises(VectorIndexError, match="cannot reach Milvus"):
        build_index(mixed_corpus, tmp_path / "new", enc, kind="milvus", index_options={"uri": bad, "timeout": 3})
    assert not (tmp_path / "new").exists()
    with pytest.raises(VectorIndexError, match="does not exist"):
        build_index(
            mixed_corpus, tmp_path / "new", enc, kind="milvus", index_options={"uri": str(tmp_path / "no/x.db")}
        )
    assert not (tmp_path / "new").exists()


@needs_milvus
def test_cli_backend_milvus(tiny_clip, mixed_corpus, milvus_uri, tmp_path):
    from mixsearch.cli import app

    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, [str(a) for a in args])

    out = tmp_path / "idx"
    common = ["index", mixed_corpus, "--out", out, "--model", tiny_clip, "--calibration", "none"]
    result = run(*common, "--backend", "milvus", "--uri", milvus_uri)  # the default index type, AUTOINDEX
    assert result.exit_code == 0, result.output
    info = json.loads(run("info", out, "--json").stdout)
    assert info["index"]["kind"] == "milvus" and info["backend"]["uri"] == milvus_uri
    assert info["backend"]["index_type"] == "AUTOINDEX"
    assert info["backend"]["collection"] in collections(milvus_uri)
    result = run("search", out, "dog beach", "-k", "3", "--modality", "image", "--json")
    assert result.exit_code == 0, result.output
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(hits) == 3 and {h["modality"] for h in hits} == {"image"}
    for args, message in [
        (["--backend", "milvus"], "needs --uri"),
        (["--uri", milvus_uri], "--backend milvus"),
        (["--backend", "cloud"], "expected local or milvus"),
        (["--backend", "milvus", "--uri", milvus_uri, "--index", "hnsw"], "index_type"),
    ]:
        result = run(*common, *args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)


@needs_milvus
def test_a_lite_file_held_by_another_process_is_a_clear_error(lite_uri):
    import subprocess
    import sys

    collections(lite_uri)  # this process holds the file open
    code = "import sys; from mixsearch.index.milvus import connect; connect(sys.argv[1])"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    command = [sys.executable, "-c", code, lite_uri]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0
    assert f"cannot reach Milvus at {lite_uri}" in done.stderr and "one process at a time" in done.stderr

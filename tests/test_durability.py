"""Issue 8's hostile-but-fair checks of the index folder: kill -9 at every dangerous point of a
build and of a recalibration, two writers at once, crafted and damaged files, and validation
that happens before any encoding."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import sentence, write_image

import mixsearch as ms
from mixsearch.engine import store

QUERIES = ["dog beach ball", "snow child water", "red bike street"]


def corpus(folder: Path, prefix: str, n: int = 6, seed: int = 0) -> Path:
    """A small mixed corpus whose ids start with ``prefix``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        record = {"id": f"{prefix}{i}", "text": sentence(rng)}
        if i % 2:
            record["image"] = str(write_image(folder / f"{prefix}{i}.png", seed * 100 + i))
        lines.append(json.dumps(record))
    path = folder / f"{prefix}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def answers(folder: Path) -> dict:
    index = ms.open_index(folder)  # also runs every integrity check
    return {q: [(h.id, round(h.score, 5)) for h in index.search(q, k=20)] for q in QUERIES}


def only_current_files(folder: Path) -> bool:
    manifest = store.read_manifest(folder)
    return {p.name for p in folder.iterdir()} == {*manifest.files.values(), store.MANIFEST, store.LOCK}


CHILD = r"""
import os, signal, sys
import mixsearch as ms
from mixsearch.engine import build, durable, mixindex, store
from mixsearch.index import exact

point, action, model, out, source = sys.argv[1:6]
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if point == "encoding":  # the second batch of the build
    from mixsearch.encoders.transformers import TransformersEncoder
    real, calls = TransformersEncoder._encode_batch, []
    def second(self, batch, modality):
        calls.append(1)
        if len(calls) == 2:
            die()
        return real(self, batch, modality)
    TransformersEncoder._encode_batch = second
elif point == "documents":
    store.write_table = die
elif point == "calibration":
    build.save_calibration = mixindex.save_calibration = die
elif point == "index":
    exact.ExactIndex.save = die
elif point == "manifest":  # half of the new manifest written to its temporary file
    def half(path, data):
        path.with_name(f".{path.name}.{os.getpid()}.tmp").write_text('{"format": "mixsearch-ind')
        die()
    durable.write_json_atomic = half
elif point == "cleanup":  # committed, the old generation not yet removed
    store.remove_stale = die
if action == "build":
    ms.build_index(source, out, model, calibration="none", progress=False)
else:
    ms.open_index(out).recalibrate(None if source == "corpus" else source, alpha=0.3)
"""


def run_child(point, action, model, out, source, env):
    done = subprocess.run(
        [sys.executable, "-c", CHILD, point, action, str(model), str(out), str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done


@pytest.fixture
def two_corpora(tmp_path):
    return corpus(tmp_path / "a", "a", seed=1), corpus(tmp_path / "b", "b", seed=2)


@pytest.mark.slow
def test_kill_9_during_a_build_loses_nothing(tiny_clip, two_corpora, tmp_path):
    a, b = two_corpora
    env = dict(os.environ)
    ms.build_index(b, tmp_path / "ref-b", str(tiny_clip), calibration="none", progress=False)
    ref_b = answers(tmp_path / "ref-b")
    for point in ("encoding", "documents", "calibration", "index", "manifest", "cleanup"):
        out = tmp_path / f"idx-{point}"
        ms.build_index(a, out, str(tiny_clip), calibration="none", progress=False)
        ref_a = answers(out)
        cold = {**env, "MIXSEARCH_CACHE_DIR": str(tmp_path / "cold-cache")} if point == "encoding" else env
        done = run_child(point, "build", tiny_clip, out, b, cold)
        assert done.returncode == -9, (point, done.stderr[-2000:])
        after = answers(out)  # opens cleanly: old state before the commit, new state after it
        assert after == (ref_b if point == "cleanup" else ref_a), point
        ms.build_index(b, out, str(tiny_clip), calibration="none", progress=False)  # the rerun finishes the job
        assert answers(out) == ref_b and only_current_files(out), point


@pytest.mark.slow
def test_kill_9_during_a_recalibration_loses_nothing(tiny_clip, two_corpora, tmp_path):
    a, _ = two_corpora
    env = dict(os.environ)
    ms.build_index(a, tmp_path / "ref", str(tiny_clip), progress=False)
    ms.open_index(tmp_path / "ref").recalibrate("none", alpha=0.3)
    ref_new = answers(tmp_path / "ref")
    for point in ("calibration", "index", "manifest", "cleanup"):
        out = tmp_path / f"idx-{point}"
        ms.build_index(a, out, str(tiny_clip), progress=False)
        ref_old = answers(out)
        done = run_child(point, "recalibrate", tiny_clip, out, "none", env)
        assert done.returncode == -9, (point, done.stderr[-2000:])
        assert answers(out) == (ref_new if point == "cleanup" else ref_old), point
        ms.open_index(out).recalibrate("none", alpha=0.3)
        assert answers(out) == ref_new and only_current_files(out), point


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tiny_clip, two_corpora, tmp_path):
    a, b = two_corpora
    out = tmp_path / "idx"
    ms.build_index(a, out, str(tiny_clip), calibration="none", progress=False)
    before = answers(out)
    with store.writing(out):  # another process's build, as far as the lock is concerned
        with pytest.raises(ms.InputError, match="another mixsearch process is writing this index"):
            ms.build_index(b, out, str(tiny_clip), calibration="none", progress=False)
        with pytest.raises(ms.InputError, match="another mixsearch process is writing this index"):
            ms.open_index(out).recalibrate("none", alpha=0.2)
        assert answers(out) == before  # readers are never blocked
    ms.open_index(out).recalibrate("none", alpha=0.2)  # free again


@pytest.mark.slow
def test_two_index_processes_into_one_folder_never_mix(tiny_clip, two_corpora, tmp_path):
    a, b = two_corpora
    refs = {}
    for name, source in (("a", a), ("b", b)):
        ms.build_index(source, tmp_path / f"ref-{name}", str(tiny_clip), calibration="none", progress=False)
        refs[name] = answers(tmp_path / f"ref-{name}")
    for attempt in range(3):
        out = tmp_path / f"race-{attempt}"
        cmd = [sys.executable, "-m", "mixsearch", "index", "--model", str(tiny_clip), "--calibration", "none"]
        procs = [
            subprocess.Popen(
                [*cmd, str(source), "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for source in (a, b)
        ]
        results = [(p.communicate(timeout=300)[1], p.returncode) for p in procs]
        results = [(code, err) for err, code in results]
        for code, err in results:
            assert code == 0 or (code == 1 and "another mixsearch process is writing" in err), err[-2000:]
        assert any(code == 0 for code, _ in results)
        assert answers(out) in (refs["a"], refs["b"])  # one corpus's index, whole, never a mix


@pytest.fixture
def built(tiny_clip, two_corpora, tmp_path):
    index, _ = ms.build_index(two_corpora[0], tmp_path / "idx", str(tiny_clip), progress=False)
    return index.folder


def test_reordered_document_rows_are_refused(built):
    import pyarrow.parquet as pq

    manifest = store.read_manifest(built)
    path = store.files_of(built, manifest)["documents"] / f"{manifest.segments[0].name}.parquet"
    table = pq.read_table(path)
    pq.write_table(table.take(list(reversed(range(table.num_rows)))), path)
    with pytest.raises(ms.VectorIndexError, match="damaged index: the document table's ids are not the ones"):
        ms.open_index(built)


def test_a_calibration_file_of_another_model_is_refused_on_open(built, tiny_clip_other, tmp_path):
    other = ms.load_encoder(str(tiny_clip_other))
    foreign = ms.fit_calibration(
        other, {"query": ["a dog"], "text": ["a cat"], "image": [str(p) for p in built.parent.glob("a/*.png")]}
    )
    ms.save_calibration(foreign, store.files_of(built, store.read_manifest(built))["calibration"])
    with pytest.raises(ms.VectorIndexError, match="calibration does not fit its model.*cannot be applied"):
        ms.open_index(built)


def test_means_with_nan_are_refused(built, tiny_clip, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    path = store.files_of(built, store.read_manifest(built))["calibration"]
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    tensors["mean.text"][3] = np.nan
    save_file(tensors, str(tmp_path / "nan.safetensors"), metadata=meta)
    with pytest.raises(ms.CalibrationError, match="nan.safetensors: unusable calibration file.*finite"):
        ms.load_calibration(tmp_path / "nan.safetensors")
    shutil.copyfile(tmp_path / "nan.safetensors", path)
    with pytest.raises(ms.CalibrationError, match="finite"):
        ms.open_index(built)
    with pytest.raises(ms.CalibrationError, match="NaN"):
        ms.Calibrator().fit({"text": np.array([[np.nan, 1.0]], np.float32)})


def test_a_missing_or_garbled_part_is_a_clear_error_and_a_rebuild_mends_it(built, tiny_clip, two_corpora):
    manifest = store.read_manifest(built)
    shutil.rmtree(store.files_of(built, manifest)["index"])
    with pytest.raises(ms.VectorIndexError, match=r"damaged index: .*index-1 is missing"):
        ms.open_index(built)
    (built / "manifest.json").write_text('{"format": "mixsearch-ind')  # as a crash of 0.1 could leave it
    with pytest.raises(ms.VectorIndexError, match="unreadable manifest"):
        ms.open_index(built)
    ms.build_index(two_corpora[0], built, str(tiny_clip), progress=False)  # a folder of our own files: rebuilt
    assert len(ms.open_index(built)) == 6 and only_current_files(built)


def test_everything_checkable_is_refused_before_encoding(
    tiny_clip, tiny_clip_other, two_corpora, tmp_path, monkeypatch
):
    enc = ms.load_encoder(str(tiny_clip))
    other = ms.fit_calibration(ms.load_encoder(str(tiny_clip_other)), {"query": ["a dog"], "text": ["a cat"]})
    mine_text_only = ms.fit_calibration(enc, {"query": ["a dog"], "text": ["a cat"]})

    def no_encoding(*_):
        raise AssertionError("encoded before refusing")

    monkeypatch.setattr(enc, "_encode_batch", no_encoding)
    a = two_corpora[0]  # has image documents
    cases = [
        (dict(calibration=other), ms.CalibrationError, "cannot be applied"),
        (dict(calibration=mine_text_only), ms.CalibrationError, "no 'image' mean"),
        (dict(alpha=1.5), ms.UsageError, "alpha must be in"),
        (dict(kind="annoy"), ms.VectorIndexError, "unknown index kind"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            ms.build_index(a, tmp_path / "idx", enc, progress=False, **kwargs)
        assert not (tmp_path / "idx").exists()


def test_an_empty_corpus_is_an_error_and_the_old_index_stays(tiny_clip, two_corpora, tmp_path):
    out = tmp_path / "idx"
    ms.build_index(two_corpora[0], out, str(tiny_clip), calibration="none", progress=False)
    before = answers(out)
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"id": "x", "text": "  "}\n{not json\n')
    with pytest.raises(
        ms.InputError, match="no documents to index\n2 documents skipped; 2 problems:\n  - .*empty document"
    ):
        ms.build_index(empty, out, str(tiny_clip), calibration="none", progress=False)
    assert answers(out) == before and only_current_files(out)
    with pytest.raises(ms.InputError, match="no documents to index"):
        ms.build_index(empty, tmp_path / "new", str(tiny_clip), calibration="none", progress=False)
    assert not (tmp_path / "new").exists()


def test_folders_beside_the_index_are_never_removed(tiny_clip, two_corpora, tmp_path):
    """0.1 built in idx.building and swapped through idx.old: such a folder may be a user's backup,
    or after a crash the only complete copy. It is named in the report, never deleted."""
    out = tmp_path / "idx"
    for leftover in ("idx.building", "idx.old"):
        (tmp_path / leftover / "raw").mkdir(parents=True)
        (tmp_path / leftover / "raw" / "IMG_0001.CR2").write_text("precious")
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"id": "x", "text": ""}\n')
    with pytest.raises(ms.InputError):
        ms.build_index(empty, out, str(tiny_clip), calibration="none", progress=False)
    _, report = ms.build_index(two_corpora[0], out, str(tiny_clip), calibration="none", progress=False)
    for leftover in ("idx.building", "idx.old"):
        assert (tmp_path / leftover / "raw" / "IMG_0001.CR2").read_text() == "precious"
    assert "idx.old looks like a folder mixsearch 0.1 left behind" in report.summary()


def test_a_folder_that_only_looks_like_an_index_is_refused(tiny_clip, two_corpora, tmp_path):
    shoot = tmp_path / "shoot"
    (shoot / "raw-2023").mkdir(parents=True)
    (shoot / "raw-2023" / "IMG_0001.CR2").write_text("precious")
    site = tmp_path / "site"
    site.mkdir()
    (site / "manifest.json").write_text('{"name": "my web app"}')
    for folder in (shoot, site):
        with pytest.raises(ms.InputError, match="is not a mixsearch index; refusing to write into it"):
            ms.build_index(two_corpora[0], folder, str(tiny_clip), calibration="none", progress=False)
    assert (shoot / "raw-2023" / "IMG_0001.CR2").read_text() == "precious"
    assert (site / "manifest.json").read_text() == '{"name": "my web app"}'


def test_names_no_generation_of_ours_wrote_are_kept(tiny_clip, two_corpora, tmp_path):
    out = tmp_path / "idx"
    ms.build_index(two_corpora[0], out, str(tiny_clip), calibration="none", progress=False)
    (out / "raw-2023").mkdir()
    (out / "notes.txt").write_text("mine")
    ms.open_index(out).recalibrate("none", alpha=0.3)
    ms.build_index(two_corpora[1], out, str(tiny_clip), calibration="none", progress=False)
    assert (out / "raw-2023").is_dir() and (out / "notes.txt").read_text() == "mine"


def test_a_cleanup_failure_after_the_commit_keeps_the_new_state(tiny_clip, two_corpora, tmp_path, monkeypatch, caplog):
    out = tmp_path / "idx"
    ms.build_index(two_corpora[0], out, str(tiny_clip), progress=False)
    real = store.remove_stale

    def busy(*args, **kwargs):  # as NFS answers while a reader still maps the old vectors
        raise OSError(39, "Directory not empty", str(out / "index-1"))

    monkeypatch.setattr(store, "remove_stale", busy)
    with caplog.at_level("WARNING", logger="mixsearch"):
        ms.open_index(out).recalibrate("none", alpha=0.3)
    assert "committed, but old files could not all be removed yet" in caplog.text
    index = ms.open_index(out)
    assert index.manifest.generation == 2 and index.calibrator.method == "none" and index.alpha == 0.3
    monkeypatch.setattr(store, "remove_stale", real)
    ms.open_index(out).recalibrate("none", alpha=0.4)  # the next change removes what was left
    assert only_current_files(out)


OPENER = r"""
import sys
import mixsearch as ms
from mixsearch import MixsearchError
folder, min_opens, min_generations, max_opens = sys.argv[1], *map(int, sys.argv[2:])
opened = failed = 0
seen = set()
# counts, not a time window: open until enough opens have met enough commits (the cap only
# stops a runaway loop when the writer has stopped committing)
while (opened < min_opens or len(seen) < min_generations) and opened + failed < max_opens:
    try:
        seen.add(ms.open_index(folder).manifest.generation)
        opened += 1
    except MixsearchError as err:
        failed += 1
        print(type(err).__name__, err, file=sys.stderr)
print(opened, failed, len(seen))
"""


@pytest.mark.slow
def test_readers_opening_during_commits_never_fail(tiny_clip, two_corpora, tmp_path):
    """A reader in another process opens the index over and over while this one recalibrates it:
    every open succeeds (a reader that meets a generation being removed retries with the new one).
    The reader stops on counts (N opens that saw K generations), not after some seconds, so a slow
    machine makes the test longer, never flaky."""
    min_opens, min_generations = 20, 8
    out = tmp_path / "idx"
    ms.build_index(two_corpora[0], out, str(tiny_clip), calibration="none", progress=False)
    reader = subprocess.Popen(
        [sys.executable, "-c", OPENER, str(out), str(min_opens), str(min_generations), "5000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    index, changes = ms.open_index(out), 0
    while reader.poll() is None and changes < 2000:  # every commit is a new generation for the reader to meet
        index.recalibrate("none", alpha=(changes % 10) / 10)
        changes += 1
    stdout, stderr = reader.communicate(timeout=300)
    opened, failed, generations = map(int, stdout.split())
    assert failed == 0, stderr[-2000:]
    # every generation past the first was committed while the reader was in its open loop
    assert opened >= min_opens and generations >= min_generations, (opened, generations, changes, stderr[-2000:])


def test_recalibrate_with_only_alpha_keeps_the_calibration(tmp_path):
    from typer.testing import CliRunner

    from mixsearch.cli import app

    folder = tmp_path / "legacy"
    shutil.copytree(Path(__file__).parent / "data" / "legacy-v1", folder)
    index = folder / "index"
    before = ms.open_index(index)
    runner = CliRunner()
    result = runner.invoke(app, ["recalibrate", str(index), "--alpha", "0.7"])
    assert result.exit_code == 0, result.output
    after = ms.open_index(index)
    assert after.alpha == 0.7 and after.manifest.calibration.source == before.manifest.calibration.source
    for role, mean in before.calibrator.means_.items():
        np.testing.assert_array_equal(after.calibrator.means_[role], mean)
    assert runner.invoke(app, ["recalibrate", str(index)]).exit_code == 2  # nothing to change
    result = runner.invoke(app, ["recalibrate", str(index), "--calibration", "corpus"])
    assert result.exit_code == 0 and ms.open_index(index).manifest.calibration.source == "corpus"


def test_fifty_threads_on_a_fresh_index_load_the_model_once(built, monkeypatch):
    import threading
    import time

    from mixsearch.engine import mixindex

    loads = []
    real = mixindex.load_encoder

    def slow_counting_load(*args, **kwargs):
        loads.append(threading.get_ident())
        time.sleep(0.3)  # widen the window in which other threads ask for the model
        return real(*args, **kwargs)

    monkeypatch.setattr(mixindex, "load_encoder", slow_counting_load)
    index = ms.open_index(built)
    results, errors = [None] * 50, []

    def query(i):
        try:
            results[i] = [h.id for h in index.search(QUERIES[i % 3], k=5)]
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=query, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(loads) == 1
    assert all(results[i] == results[i % 3] for i in range(50))

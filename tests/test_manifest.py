"""The typed manifest, the pure ``MixIndex`` constructor, and the one write transaction."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import mixsearch as ms
from mixsearch.engine import store
from mixsearch.engine.manifest import (
    FORMAT,
    FORMAT_1,
    CalibrationRecord,
    DocumentCounts,
    IndexRecord,
    Manifest,
    ModelRecord,
    Segment,
)
from mixsearch.engine.mixindex import MixIndex

LEGACY = Path(__file__).parent / "data" / "legacy-v1"


def a_manifest(**changes) -> Manifest:
    manifest = Manifest(
        model=ModelRecord("tiny", "f00d", 4, ("image", "text"), "TransformersEncoder"),
        calibration=CalibrationRecord("none", 0.5, source="none", counts={}, file="calibration-1.safetensors"),
        index=IndexRecord("exact", {"dtype": "float32"}, "index-1"),
        documents=DocumentCounts.of(["text", "image", "multimodal"]),
        generation=1,
        files=store.generation_files(1),
        segments=(Segment("1", 3),),
        created="2026-01-01T00:00:00+00:00",
        integrity={"ids_sha256": store.ids_checksum(["a", "b", "c"])},
    )
    return manifest.replace(**changes)


def test_a_manifest_round_trips_through_json_keeping_unknown_keys(tmp_path):
    data = a_manifest().to_dict()
    data["from_the_future"] = {"x": 1}  # a newer mixsearch's keys, at the top and in each record
    data["model"]["pooling"] = "cls"
    data["calibration"]["temperature"] = 0.07
    data["index"]["shards"] = 4
    data["documents"]["screenshot"] = 0
    typed = Manifest.from_dict(json.loads(json.dumps(data)))
    assert typed.model.name == "tiny" and typed.calibration.alpha == 0.5 and typed.index.kind == "exact"
    assert typed.documents == DocumentCounts(3, 1, 1, 0, 0, 1, extra={"screenshot": 0})
    assert typed.segments == (Segment("1", 3),) and typed.generation == 1 and typed.format == FORMAT
    assert typed.to_dict() == data  # nothing lost, nothing added
    assert Manifest.from_dict(typed.to_dict()) == typed
    typed.write(tmp_path)  # and through the folder
    assert Manifest.read(tmp_path) == typed == store.read_manifest(tmp_path)
    assert json.loads((tmp_path / store.MANIFEST).read_text()) == data
    with pytest.raises(AttributeError):  # frozen: changes go through replace
        typed.generation = 2  # type: ignore[misc]
    assert typed.replace(generation=2).generation == 2 and typed.generation == 1


def test_older_formats_read_into_the_same_type():
    manifest = Manifest.read(LEGACY / "index")
    assert manifest.format == FORMAT_1 and manifest.is_legacy and manifest.generation == 0
    assert manifest.model.name == "mixclip-flickr8k" and manifest.model.dim == 512
    assert manifest.calibration.method == "mean" and manifest.documents == DocumentCounts(6, 2, 2, 0, 0, 2)
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    assert "generation" not in manifest.to_dict()  # format 1 had none


def test_a_garbled_manifest_is_a_vector_index_error(tmp_path):
    (tmp_path / store.MANIFEST).write_text(json.dumps({"format": FORMAT, "files": {}, "model": {"name": "x"}}))
    with pytest.raises(ms.VectorIndexError, match="unreadable manifest"):
        Manifest.read(tmp_path)


def test_the_constructor_does_no_io(tmp_path, monkeypatch):
    import pyarrow as pa

    from mixsearch.index import ExactIndex

    def no_io(*args, **kwargs):
        raise AssertionError("the constructor read the folder")

    monkeypatch.setattr(store, "read_manifest", no_io)
    monkeypatch.setattr(store, "read_data", no_io)
    monkeypatch.setattr(Manifest, "read", no_io)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = pa.table({"id": ["a", "b", "c"], "modality": ["text", "image", "multimodal"], "text": ["x", None, "z"]})
    table = table.append_column("image", pa.array([None, "b.png", "c.png"])).append_column(
        "audio", pa.nulls(3, pa.string())
    )
    table = table.append_column("video", pa.nulls(3, pa.string()))
    data = store.Data([Segment("1", 3)], None, table, table.to_pydict(), {"text": vectors, "image": vectors})
    index = ExactIndex(vectors, ["a", "b", "c"], store.field_columns(table))
    folder = tmp_path / "nowhere"
    idx = MixIndex(folder, a_manifest(), data, ms.Calibrator(method="none"), index)
    assert not folder.exists() and len(idx) == 3 and idx.alpha == 0.5 and idx.model.dim == 4
    assert idx.ids == ["a", "b", "c"] and repr(idx) == f"MixIndex({str(folder)!r}, 3 documents, none alpha=0.5)"
    assert idx.index.search(vectors[1:2], 1).ids[0] == ["b"]


# -- the one write transaction -------------------------------------------------------------------


def only_current_files(folder: Path) -> bool:
    manifest = store.read_manifest(folder)
    return {p.name for p in folder.iterdir()} == {*manifest.files.values(), store.MANIFEST, store.LOCK}


@pytest.fixture
def built(tiny_clip, mixed_corpus, tmp_path):
    return ms.build_index(mixed_corpus, tmp_path / "idx", str(tiny_clip), progress=False)[0]


def test_a_transaction_left_by_an_exception_keeps_the_old_generation(built):
    folder, before = built.folder, store.read_manifest(built.folder)
    answers = [h.id for h in built.search("a photo", k=5)]
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction(folder, expected=built.manifest) as txn:
            assert txn.generation == before.generation + 1 and txn.current == before
            txn.paths["index"].mkdir()
            (txn.paths["index"] / "0.vectors.npy").write_bytes(b"half")
            txn.paths["calibration"].write_bytes(b"half")
            txn.scratch(f"fused-{txn.generation}.npy").write_bytes(b"half")
            raise RuntimeError("boom")
    with store.transaction(folder) as txn:  # left without a commit: rolled back too
        txn.paths["documents"].mkdir()
    assert store.read_manifest(folder) == before and only_current_files(folder)  # no orphan
    assert [h.id for h in ms.open_index(folder).search("a photo", k=5)] == answers


def test_a_first_build_that_fails_leaves_no_folder(tmp_path):
    folder = tmp_path / "new"
    with pytest.raises(RuntimeError):
        with store.transaction(folder, fresh=True) as txn:
            assert txn.current is None and txn.generation == 1
            txn.paths["raw"].mkdir()
            raise RuntimeError
    assert not folder.exists()


def test_a_transaction_from_a_stale_state_is_refused(built):
    stale = built.manifest
    ms.open_index(built.folder).recalibrate("none")
    with pytest.raises(ms.VectorIndexError, match="changed by someone else"):
        with store.transaction(built.folder, expected=stale):
            pass
    assert only_current_files(built.folder)


def test_an_exception_after_the_commit_keeps_the_new_state(built):
    with pytest.raises(RuntimeError):
        with store.transaction(built.folder, expected=built.manifest) as txn:
            shutil.copytree(store.files_of(built.folder, built.manifest)["index"], txn.paths["index"])
            shutil.copy(store.files_of(built.folder, built.manifest)["calibration"], txn.paths["calibration"])
            txn.commit(store.record_files(built.manifest, txn.generation, keep_data_of=built.manifest))
            raise RuntimeError
    assert store.read_manifest(built.folder).generation == built.manifest.generation + 1
    assert len(ms.open_index(built.folder)) == len(built)


def test_build_add_delete_and_persist_all_commit_through_the_transaction(
    tiny_clip, mixed_corpus, tmp_path, monkeypatch
):
    commits = []
    real = store.Transaction.commit

    def counting(self, manifest):
        commits.append(manifest.generation)
        return real(self, manifest)

    monkeypatch.setattr(store.Transaction, "commit", counting)
    idx, _ = ms.build_index(mixed_corpus, tmp_path / "idx", str(tiny_clip), progress=False)
    idx.add([ms.Document(id="new", text="a new document")], progress=False)
    idx.delete(["new"])
    idx = idx.with_calibration("none").persist()
    idx.recalibrate("none", alpha=0.3)
    assert commits == [1, 2, 3, 4, 5] and store.read_manifest(idx.folder).generation == 5

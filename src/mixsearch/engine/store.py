"""The index folder on disk.

Format ``mixsearch-index/2``::

    manifest.json                    model, calibration, counts, what was skipped; names the
                                     current generation's files, so writing it is the commit
    documents.parquet                id, modality, text, media paths (one row per document)
    raw/<modality>.npy               raw normalised embeddings (zero rows where a document lacks the part)
    calibration-<generation>.safetensors   the calibration applied
    index-<generation>/              the vector index's own files (kind-specific)

A recalibration writes a new generation beside the current one and then replaces the manifest
(write, fsync, rename), so a reader sees the old state or the new, never a mix.

Format ``mixsearch-index/1`` (mixsearch 0.1) kept ``calibration.safetensors``, ``vectors.npy``
and ``ids.json`` at the top of the folder; it is still read, and a recalibration upgrades it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import VectorIndexError
from ..index import ExactIndex, VectorIndex, load_index
from ..types import MEDIA, Document

FORMAT = "mixsearch-index/2"
LEGACY_FORMATS = ("mixsearch-index/1",)
MANIFEST = "manifest.json"
DOCUMENTS = "documents.parquet"
RAW = "raw"
_LEGACY_FILES = ("vectors.npy", "ids.json", "calibration.safetensors")


def is_index(folder: Path) -> bool:
    """Whether ``folder`` holds a mixsearch index (of any readable format)."""
    try:
        return read_manifest(folder) is not None
    except VectorIndexError:
        return False


def read_manifest(folder: Path) -> dict:
    """The manifest of an index folder, checked for a readable format."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise VectorIndexError(f"{folder}: not a mixsearch index (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise VectorIndexError(f"{path}: unreadable manifest ({err})") from None
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    if fmt != FORMAT and fmt not in LEGACY_FORMATS:
        raise VectorIndexError(
            f"{folder}: unknown index format {fmt!r} (this mixsearch reads {FORMAT} and "
            f"{', '.join(LEGACY_FORMATS)}); rebuild it with 'mixsearch index'"
        )
    return manifest


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to a temporary file, flush it to disk, and rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def write_documents(path: Path, docs: Sequence[Document]) -> None:
    """``documents.parquet``: id, modality, text and media paths of each document, in index order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {
        "id": [d.id for d in docs],
        "modality": [d.modality for d in docs],
        "text": [d.text for d in docs],
        **{m: [None if getattr(d, m) is None else str(getattr(d, m)) for d in docs] for m in MEDIA},
    }
    pq.write_table(pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()}), path)


def read_documents(folder: Path) -> dict[str, list]:
    """The document table, column by column."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(Path(folder) / DOCUMENTS).to_pydict()
    except (OSError, ValueError) as err:
        raise VectorIndexError(f"{folder}: unreadable {DOCUMENTS} ({err})") from None


def read_raw(folder: Path) -> dict[str, np.ndarray]:
    """The raw embeddings of each modality, memory-mapped."""
    return {p.stem: np.load(p, mmap_mode="r") for p in sorted((Path(folder) / RAW).glob("*.npy"))}


def calibration_file(folder: Path, manifest: dict) -> Path:
    """The calibration file of the manifest's generation."""
    if manifest["format"] in LEGACY_FORMATS:
        return Path(folder) / "calibration.safetensors"
    return Path(folder) / manifest["calibration"]["file"]


def open_vector_index(folder: Path, manifest: dict, documents: dict[str, list]) -> VectorIndex:
    """The vector index of the manifest's generation, of the kind the manifest names."""
    folder = Path(folder)
    if manifest["format"] in LEGACY_FORMATS:  # an exact index at the top; modality from the documents
        try:
            vectors = np.load(folder / "vectors.npy", mmap_mode="r")
            ids = json.loads((folder / "ids.json").read_text())
        except (OSError, ValueError) as err:
            raise VectorIndexError(f"{folder}: unreadable index ({err})") from None
        return ExactIndex(vectors, ids, {"modality": np.asarray(documents["modality"])}, where=f"index at {folder}")
    return load_index(folder / manifest["index"]["path"], manifest["index"]["kind"])


def commit_generation(
    folder: Path, manifest: dict, save_calibration: Callable[[Path], object], index: VectorIndex
) -> dict:
    """Write a new generation (calibration via ``save_calibration(path)``, then the index), then the
    manifest that names it; finally remove the files of older generations. Returns the manifest."""
    folder = Path(folder)
    generation = int(manifest.get("generation", 0)) + 1
    cal_name, index_name = f"calibration-{generation}.safetensors", f"index-{generation}"
    shutil.rmtree(folder / index_name, ignore_errors=True)  # leftovers of a run that died before its commit
    save_calibration(folder / cal_name)
    index.save(folder / index_name)
    manifest = {
        **manifest,
        "format": FORMAT,
        "generation": generation,
        "index": {**manifest.get("index", {}), "kind": index.kind, "path": index_name},
    }
    manifest["calibration"] = {**manifest.get("calibration", {}), "file": cal_name}
    write_json_atomic(folder / MANIFEST, manifest)
    remove_stale(folder, manifest)
    return manifest


def remove_stale(folder: Path, manifest: dict) -> None:
    """Delete files no generation in the manifest uses (older generations, format-1 leftovers)."""
    keep = {manifest["calibration"]["file"], manifest["index"]["path"]}
    for p in Path(folder).iterdir():
        stale = (
            (p.name.startswith("calibration-") and p.name.endswith(".safetensors"))
            or p.name.startswith("index-")
            or p.name in _LEGACY_FILES
        )
        if stale and p.name not in keep:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)

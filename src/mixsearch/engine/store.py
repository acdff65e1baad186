"""The index folder on disk, and the one way it changes: a new generation, then one rename.

Format ``mixsearch-index/2``::

    manifest.json                    the commit point: model, calibration, counts, what was skipped,
                                     integrity checksums, and the files of the current generation
    documents-<g>.parquet            id, modality, text, media paths (one row per document)
    raw-<g>/<modality>.npy           raw normalised embeddings (zero rows where a document lacks the part)
    calibration-<g>.safetensors      the calibration applied
    index-<g>/                       the vector index's own files (kind-specific)
    .mixsearch.lock                  held by the one process writing (build, recalibrate)

Every change — a build (also over an existing index) or a recalibration — writes the files of
generation ``g + 1`` beside those of ``g``, flushes them to disk, and then replaces
``manifest.json`` (write a temporary file, fsync, rename, fsync the folder). Readers see the old
generation or the new one, never a mix; a writer killed at any moment leaves the old generation
intact and some orphan files, which the next writer removes. Writers take an exclusive lock, so
two of them cannot interleave.

Format ``mixsearch-index/1`` (mixsearch 0.1) kept ``documents.parquet``, ``raw/``,
``calibration.safetensors``, ``vectors.npy`` and ``ids.json`` at the top of the folder; it is
still read, and the next change upgrades it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import InputError, VectorIndexError
from ..index import ExactIndex, VectorIndex, load_index
from ..index.base import discard_index
from ..types import MEDIA, Document

FORMAT = "mixsearch-index/2"
LEGACY_FORMATS = ("mixsearch-index/1",)
log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
LOCK = ".mixsearch.lock"
#: Files of format 1 (and the leftovers its recalibration could leave), removed on upgrade.
_LEGACY_NAMES = {
    "documents.parquet",
    "raw",
    "calibration.safetensors",
    "vectors.npy",
    "ids.json",
    "vectors.new.npy",
    "calibration.new.safetensors",
}
#: Files of one generation, with its number.
_GENERATION_FILE = re.compile(
    r"(?:documents-(\d+)\.parquet|raw-(\d+)|calibration-(\d+)\.safetensors|index-(\d+)|fused-(\d+)\.npy)"
)
#: A manifest being written by a writer that may have died.
_MANIFEST_TMP = re.compile(r"\.manifest\.json\.\d+\.tmp")


# -- the commit point ----------------------------------------------------------------------------


def read_manifest(folder: Path) -> dict:
    """The manifest of an index folder, checked for a readable format."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise VectorIndexError(f"{folder}: not a mixsearch index (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise VectorIndexError(f"{path}: unreadable manifest ({err}); rebuild the index") from None
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    if fmt != FORMAT and fmt not in LEGACY_FORMATS:
        raise VectorIndexError(
            f"{folder}: unknown index format {fmt!r} (this mixsearch reads {FORMAT} and "
            f"{', '.join(LEGACY_FORMATS)}); rebuild it with 'mixsearch index'"
        )
    if fmt == FORMAT and not isinstance(manifest.get("files"), dict):
        raise VectorIndexError(f"{path}: the manifest names no files; rebuild the index with 'mixsearch index'")
    return manifest


def is_index(folder: Path) -> bool:
    """Whether ``folder`` holds a mixsearch index (of any readable format)."""
    try:
        read_manifest(folder)
        return True
    except VectorIndexError:
        return False


def holds_only_ours(folder: Path) -> bool:
    """Whether ``folder`` is one a build of ours started — it holds our lock file — and holds
    nothing but names an index writes (say, a first build that died, or a garbled manifest)."""
    names = {p.name for p in Path(folder).iterdir()}
    return LOCK in names and all(
        n in (MANIFEST, LOCK) or _GENERATION_FILE.fullmatch(n) or _MANIFEST_TMP.fullmatch(n) for n in names
    )


def _generation_of(name: str) -> int | None:
    match = _GENERATION_FILE.fullmatch(name)
    return None if match is None else int(next(g for g in match.groups() if g is not None))


def write_json_atomic(path: Path, data: dict) -> None:
    """Replace ``path`` with JSON: write a temporary file, flush it to disk, rename it over."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in [path] if path.is_file() else sorted(path.rglob("*")):
        if p.is_file():
            with p.open("rb") as f:
                os.fsync(f.fileno())


@contextmanager
def writing(folder: Path) -> Iterator[None]:
    """Hold the folder's write lock (created with the folder), or fail at once naming the holder's lock."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise InputError(
            f"{folder}: another mixsearch process is writing this index (it holds {folder / LOCK}); "
            "wait for it to finish, then run again"
        ) from None
    try:
        yield
    finally:
        lock.release()


# -- generations ---------------------------------------------------------------------------------


def next_generation(manifest: dict | None) -> int:
    """The number of the generation a change writes."""
    return int((manifest or {}).get("generation", 0)) + 1


def generation_files(generation: int) -> dict[str, str]:
    """The file names of one generation."""
    return {
        "documents": f"documents-{generation}.parquet",
        "raw": f"raw-{generation}",
        "calibration": f"calibration-{generation}.safetensors",
        "index": f"index-{generation}",
    }


def files_of(folder: Path, manifest: dict) -> dict[str, Path]:
    """The paths of the manifest's generation (format 1: its fixed names)."""
    folder = Path(folder)
    if manifest["format"] in LEGACY_FORMATS:
        return {
            "documents": folder / "documents.parquet",
            "raw": folder / "raw",
            "calibration": folder / "calibration.safetensors",
            "index": folder,
        }
    return {role: folder / name for role, name in manifest["files"].items()}


def clear(paths: Sequence[Path]) -> None:
    """Remove files or folders (orphans of a change that died before its commit, old generations);
    an index folder's kind first frees what it holds elsewhere (``discard_index``: a Milvus collection)."""
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            discard_index(p)
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


def publish(folder: Path, manifest: dict, written: Sequence[Path]) -> dict:
    """The commit point: flush ``written`` (the new generation's files) to disk, then replace the
    manifest that names them. Returns the manifest. Nothing after this may roll the change back."""
    for path in written:
        _fsync_tree(path)
    _fsync_dir(Path(folder))
    write_json_atomic(Path(folder) / MANIFEST, manifest)
    return manifest


def is_committed(folder: Path, generation: int) -> bool:
    """Whether the manifest on disk names ``generation`` (a writer interrupted just after its
    rename has committed, whatever it was told)."""
    try:
        return read_manifest(folder).get("generation") == generation
    except VectorIndexError:
        return False


def tidy(folder: Path, manifest: dict, previous: dict | None) -> None:
    """After a commit, remove the files of older generations (and, after an upgrade, format 1's).
    Best effort: a file that cannot be removed now (a reader's mapping on NFS, say) is left for the
    next writer, and the committed state is untouched either way."""
    try:
        remove_stale(folder, manifest, previous)
    except OSError as err:
        log.warning(
            "%s: committed, but old files could not all be removed yet (%s); the next change retries", folder, err
        )


def remove_stale(folder: Path, manifest: dict, previous: dict | None = None) -> None:
    """Delete the files of generations older than the manifest's, the temporary manifests of dead
    writers, and — only when ``previous`` was a format-1 manifest — format 1's names. Nothing else:
    a name no generation of ours could have written is never touched."""
    keep = set(manifest["files"].values()) | {MANIFEST, LOCK}
    upgraded = previous is not None and previous.get("format") in LEGACY_FORMATS
    for p in Path(folder).iterdir():
        if p.name in keep:
            continue
        generation = _generation_of(p.name)
        if (
            (generation is not None and generation < manifest["generation"])
            or _MANIFEST_TMP.fullmatch(p.name)
            or (upgraded and p.name in _LEGACY_NAMES)
        ):
            clear([p])


def record_files(manifest: dict, generation: int, *, keep_data_of: dict | None = None) -> dict:
    """``manifest`` as generation ``generation``: new calibration and index files; documents and
    raw embeddings new too, unless ``keep_data_of`` (the current manifest) keeps them."""
    files = generation_files(generation)
    if keep_data_of is not None:
        if keep_data_of["format"] in LEGACY_FORMATS:
            raise ValueError("a format-1 index is upgraded by copying its data: use upgrade_data")
        files["documents"], files["raw"] = keep_data_of["files"]["documents"], keep_data_of["files"]["raw"]
    return {
        **manifest,
        "format": FORMAT,
        "generation": generation,
        "files": files,
        "index": {**manifest.get("index", {}), "path": files["index"]},
        "calibration": {**manifest.get("calibration", {}), "file": files["calibration"]},
    }


def upgrade_data(folder: Path, generation: int) -> list[Path]:
    """Copy a format-1 index's documents and raw embeddings to generation names; returns the copies."""
    folder = Path(folder)
    files = generation_files(generation)
    clear([folder / files["documents"], folder / files["raw"]])
    shutil.copyfile(folder / "documents.parquet", folder / files["documents"])
    shutil.copytree(folder / "raw", folder / files["raw"])
    return [folder / files["documents"], folder / files["raw"]]


# -- reading and writing the parts -----------------------------------------------------------------


def write_documents(path: Path, docs: Sequence[Document]) -> None:
    """The document table: id, modality, text and media paths of each document, in index order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {
        "id": [d.id for d in docs],
        "modality": [d.modality for d in docs],
        "text": [d.text for d in docs],
        **{m: [None if getattr(d, m) is None else str(getattr(d, m)) for d in docs] for m in MEDIA},
    }
    pq.write_table(pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()}), path)


def read_documents(path: Path) -> dict[str, list]:
    """The document table, column by column."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pydict()
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as err:
        raise VectorIndexError(f"{path}: unreadable document table ({err})") from None


def read_raw(folder: Path) -> dict[str, np.ndarray]:
    """The raw embeddings of each modality in a ``raw`` folder, memory-mapped."""
    if not Path(folder).is_dir():
        raise missing(folder)
    try:
        return {p.stem: np.load(p, mmap_mode="r") for p in sorted(Path(folder).glob("*.npy"))}
    except ValueError as err:
        raise VectorIndexError(f"{folder}: unreadable raw embeddings ({err})") from None


def open_vector_index(folder: Path, manifest: dict, documents: dict[str, list]) -> VectorIndex:
    """The vector index of the manifest's generation, of the kind the manifest names."""
    path = files_of(folder, manifest)["index"]
    if manifest["format"] in LEGACY_FORMATS:  # an exact index at the top; modality from the documents
        try:
            vectors = np.load(path / "vectors.npy", mmap_mode="r")
            ids = json.loads((path / "ids.json").read_text())
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as err:
            raise VectorIndexError(f"{folder}: unreadable index ({err})") from None
        return ExactIndex(vectors, ids, {"modality": np.asarray(documents["modality"])}, where=f"index at {folder}")
    if not path.is_dir():
        raise missing(path)
    return load_index(path, manifest["index"]["kind"])


def ids_checksum(ids: Sequence[str]) -> str:
    """sha256 of the ids in order: ties the document table to the vectors."""
    return hashlib.sha256(json.dumps(list(ids), ensure_ascii=False).encode("utf-8")).hexdigest()


def check_integrity(
    folder: Path, manifest: dict, documents: dict[str, list], raw: dict[str, np.ndarray], index: VectorIndex
) -> None:
    """Refuse an index whose parts do not belong together (rows reordered, a file swapped)."""
    ids = documents["id"]
    n = len(ids)
    problems = []
    expected = manifest.get("integrity", {}).get("ids_sha256")
    if expected is not None and ids_checksum(ids) != expected:
        problems.append("the document table's ids are not the ones the index was built with")
    index_ids = getattr(index, "ids", None)
    if index_ids is not None and list(index_ids) != list(ids):
        problems.append("the vector index's ids differ from the document table's (order or content)")
    if len(index) != n:
        problems.append(f"the vector index holds {len(index)} vectors for {n} documents")
    if manifest.get("documents", {}).get("total", n) != n:
        problems.append(f"the manifest counts {manifest['documents']['total']} documents, the table {n}")
    dim = manifest["model"]["dim"]
    for modality, matrix in raw.items():
        if matrix.shape != (n, dim):
            problems.append(f"raw {modality} embeddings have shape {matrix.shape}, expected {(n, dim)}")
    if index.dim != dim:
        problems.append(f"the vector index has dimension {index.dim}, the model {dim}")
    if problems:
        raise VectorIndexError(f"{folder}: damaged index: {'; '.join(problems)}. Rebuild it with 'mixsearch index'")


def check_out_folder(out: Path, corpus: object) -> None:
    """A build writes into ``out``: never let that be anything but an index (or empty)."""
    if isinstance(corpus, (str, Path)):
        source = Path(corpus).resolve()
        if source == out.resolve() or out.resolve() in source.parents:
            raise InputError(f"{out}: the index folder would replace the corpus {corpus}; choose another --out")
    if out.exists():
        if not out.is_dir():
            raise InputError(f"{out}: exists and is not a folder; choose another --out")
        if any(out.iterdir()) and not is_index(out) and not holds_only_ours(out):
            raise InputError(
                f"{out}: exists and is not a mixsearch index; refusing to write into it (use another --out)"
            )


def leftovers_of_0_1(out: Path) -> list[Path]:
    """Folders mixsearch 0.1 left beside an index (it built in ``out.building`` and swapped through
    ``out.old``). They are only named, never removed: one may be a user's backup, or after a crash
    the only complete copy."""
    siblings = (out.with_name(out.name + ".building"), out.with_name(out.name + ".old"))
    return [p for p in siblings if p.is_dir() and ((p / "raw").is_dir() or (p / MANIFEST).is_file())]


def missing(path: object) -> FileNotFoundError:
    """The error a reader turns into "damaged index" (or a retry, when a writer moved on)."""
    return FileNotFoundError(errno.ENOENT, "no such file or folder", str(path))

"""The index folder on disk, and the one way it changes: a new generation, then one rename.

Format ``mixsearch-index/3``::

    manifest.json                    the commit point: model, calibration, counts, what was skipped,
                                     integrity checksums, the files of the current generation, and
                                     its segments (``"segments": [{"name", "rows"}]``, in row order)
    documents-<g>/<s>.parquet        per segment ``s``: id, modality, text, media paths, then the
                                     documents' metadata fields as typed columns (one row per document)
    documents-<g>/deleted.npy        rows deleted (positions over all segments), when any are
    raw-<g>/<s>/<modality>.npy       raw normalised embeddings of segment ``s`` (zero rows where a
                                     document lacks the part)
    calibration-<g>.safetensors      the calibration applied
    index-<g>/                       the vector index's own files (kind-specific)
    .mixsearch.lock                  held by the one process writing (build, add, delete, recalibrate)

A segment is the rows one build or one ``add`` wrote; it is never rewritten. A change that keeps
a segment hard-links its files into the new generation's folders (a copy where links fail), so an
``add`` writes only its new segment, the small ``deleted.npy`` and the index's new part, and a
generation's folders always hold every file it uses: removing older generations never touches
them. Deleted (and replaced) rows stay in their segments, masked by ``deleted.npy``, until a
change compacts them: an add or delete that leaves more than half the stored rows deleted writes
the live rows as one new segment instead.

Every change — a build (also over an existing index), an add, a delete or a recalibration — is
one ``transaction``: it writes the files of generation ``g + 1`` beside those of ``g``, flushes
them to disk, and then replaces ``manifest.json`` (write a temporary file, fsync, rename, fsync
the folder; ``Transaction.commit``). The manifest itself is typed in ``manifest``. Readers see the old
generation or the new one, never a mix; a writer killed at any moment leaves the old generation
intact and some orphan files, which the next writer removes. Writers take an exclusive lock, so
two of them cannot interleave.

Format ``mixsearch-index/2`` had one ``documents-<g>.parquet`` and ``raw-<g>/<modality>.npy``
(one segment, no metadata, nothing deleted). Format ``mixsearch-index/1`` (mixsearch 0.1) kept
``documents.parquet``, ``raw/``,
``calibration.safetensors``, ``vectors.npy`` and ``ids.json`` at the top of the folder; it is
still read. Both are still read, and the next change upgrades them (format 2's files by hard link).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UsageError, VectorIndexError
from ..index import ExactIndex, VectorIndex, load_index
from ..index.base import discard_index
from ..types import DOCUMENT_MODALITIES, MEDIA, MODALITIES, Document
from .durable import fsync_dir, fsync_tree
from .manifest import FORMAT, FORMAT_1, FORMAT_2, LEGACY_FORMATS, MANIFEST, DocumentCounts, Manifest, Segment

__all__ = ["FORMAT", "FORMAT_1", "FORMAT_2", "LEGACY_FORMATS", "MANIFEST", "Transaction", "transaction"]

#: The document table's own columns; every other column is a metadata field.
OWN_COLUMNS = ("id", "modality", "text", *MEDIA)
log = logging.getLogger(__name__)
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
    r"(?:documents-(\d+)\.parquet|documents-(\d+)|raw-(\d+)|calibration-(\d+)\.safetensors|index-(\d+)|fused-(\d+)\.npy)"
)
#: A manifest being written by a writer that may have died.
_MANIFEST_TMP = re.compile(r"\.manifest\.json\.\d+\.tmp")


# -- the commit point ----------------------------------------------------------------------------


def read_manifest(folder: Path) -> Manifest:
    """The manifest of an index folder, checked for a readable format (``Manifest.read``)."""
    return Manifest.read(folder)


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


# -- the one write transaction -------------------------------------------------------------------


@dataclass
class Transaction:
    """One change to an index folder in progress: the next generation's number and paths, under
    the folder's write lock. ``commit`` is the only commit point."""

    folder: Path
    current: Manifest | None  # the manifest on disk when the change began (None: a first build)
    generation: int
    paths: dict[str, Path]  # the new generation's files by role (documents, raw, calibration, index)
    scratch_paths: list[Path] = field(default_factory=list)
    committed: Manifest | None = None

    def scratch(self, name: str) -> Path:
        """A temporary file of this generation (removed before and on rollback, never published)."""
        path = self.folder / name
        clear([path])
        self.scratch_paths.append(path)
        return path

    def commit(self, manifest: Manifest) -> Manifest:
        """Flush the new generation's files to disk, then replace the manifest that names them.
        Nothing after this rolls the change back."""
        if manifest.generation != self.generation:
            raise UsageError(f"a transaction at generation {self.generation} cannot commit {manifest.generation}")
        publish(self.folder, manifest, list(self.paths.values()))
        self.committed = manifest
        return manifest

    def _written(self) -> list[Path]:
        return [*self.paths.values(), *self.scratch_paths]


_ANY = object()


@contextmanager
def transaction(folder: Path, *, expected: Any = _ANY, fresh: bool = False) -> Iterator[Transaction]:
    """The one way an index folder changes (build, add, delete, recalibrate)::

        with store.transaction(folder, expected=index.manifest) as txn:
            ...write the files of txn.paths...
            txn.commit(manifest)

    Takes the write lock, reads the current manifest (``expected``: the state the caller
    changes from; the folder holding another one is a ``VectorIndexError``, as a change made
    from a stale state would undo someone else's), and clears what a writer that died at the
    next generation left. Leaving the block without ``commit``, or by an exception, removes the
    new generation's files, unless the rename already happened (``fresh``: the folder too, when
    the change created it). After a commit, the older generations' files are removed."""
    folder = Path(folder)
    with writing(folder):
        current = read_manifest(folder) if is_index(folder) else None
        if expected is not _ANY and not (current is expected or (current is not None and current.same_state(expected))):
            raise VectorIndexError(
                f"{folder} was changed by someone else since it was opened; open it again and redo the change"
            )
        generation = next_generation(current)
        txn = Transaction(folder, current, generation, {r: folder / n for r, n in generation_files(generation).items()})
        clear(txn._written())  # orphans of a change that died at this generation
        try:
            yield txn
        except BaseException:
            _roll_back(txn, fresh)
            raise
        if txn.committed is None:
            _roll_back(txn, fresh)
            return
        clear(txn.scratch_paths)
        tidy(folder, txn.committed, current)


def _roll_back(txn: Transaction, fresh: bool) -> None:
    if txn.committed is not None or is_committed(txn.folder, txn.generation):
        return  # the rename happened (maybe just before an interruption): the new state stands
    clear(txn._written())
    if fresh:
        shutil.rmtree(txn.folder, ignore_errors=True)


# -- generations ---------------------------------------------------------------------------------


def next_generation(manifest: Manifest | None) -> int:
    """The number of the generation a change writes."""
    return (0 if manifest is None else manifest.generation) + 1


def generation_files(generation: int) -> dict[str, str]:
    """The file names of one generation."""
    return {
        "documents": f"documents-{generation}",
        "raw": f"raw-{generation}",
        "calibration": f"calibration-{generation}.safetensors",
        "index": f"index-{generation}",
    }


def files_of(folder: Path, manifest: Manifest) -> dict[str, Path]:
    """The paths of the manifest's generation (format 1: its fixed names)."""
    folder = Path(folder)
    if manifest.format == FORMAT_1:
        return {
            "documents": folder / "documents.parquet",
            "raw": folder / "raw",
            "calibration": folder / "calibration.safetensors",
            "index": folder,
        }
    assert manifest.files is not None
    return {role: folder / name for role, name in manifest.files.items()}


def clear(paths: Sequence[Path]) -> None:
    """Remove files or folders (orphans of a change that died before its commit, old generations);
    an index folder's kind first frees what it holds elsewhere (``discard_index``: a Milvus collection)."""
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            discard_index(p)
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


def publish(folder: Path, manifest: Manifest, written: Sequence[Path]) -> Manifest:
    """Flush ``written`` (the new generation's files) to disk, then replace the manifest that
    names them (``Transaction.commit`` calls this). Returns the manifest."""
    for path in written:
        fsync_tree(path)
    fsync_dir(Path(folder))
    manifest.write(folder)
    return manifest


def is_committed(folder: Path, generation: int) -> bool:
    """Whether the manifest on disk names ``generation`` (a writer interrupted just after its
    rename has committed, whatever it was told)."""
    try:
        return read_manifest(folder).generation == generation
    except VectorIndexError:
        return False


def tidy(folder: Path, manifest: Manifest, previous: Manifest | None) -> None:
    """After a commit, remove the files of older generations (and, after an upgrade, format 1's).
    Best effort: a file that cannot be removed now (a reader's mapping on NFS, say) is left for the
    next writer, and the committed state is untouched either way."""
    try:
        remove_stale(folder, manifest, previous)
    except OSError as err:
        log.warning(
            "%s: committed, but old files could not all be removed yet (%s); the next change retries", folder, err
        )


def remove_stale(folder: Path, manifest: Manifest, previous: Manifest | None = None) -> None:
    """Delete the files of generations older than the manifest's, the temporary manifests of dead
    writers, and — only when ``previous`` was a format-1 manifest — format 1's names. Nothing else:
    a name no generation of ours could have written is never touched."""
    keep = set((manifest.files or {}).values()) | {MANIFEST, LOCK}
    upgraded = previous is not None and previous.format == FORMAT_1
    for p in Path(folder).iterdir():
        if p.name in keep:
            continue
        generation = _generation_of(p.name)
        if (
            (generation is not None and generation < manifest.generation)
            or _MANIFEST_TMP.fullmatch(p.name)
            or (upgraded and p.name in _LEGACY_NAMES)
        ):
            clear([p])


def record_files(manifest: Manifest, generation: int, *, keep_data_of: Manifest | None = None) -> Manifest:
    """``manifest`` as generation ``generation``: new calibration and index files; documents and
    raw embeddings new too, unless ``keep_data_of`` (the current manifest, of this format) keeps them."""
    files = generation_files(generation)
    if keep_data_of is not None:
        if keep_data_of.is_legacy or keep_data_of.files is None:
            raise UsageError("an older index is upgraded by linking its data: use upgrade_data")
        files["documents"], files["raw"] = keep_data_of.files["documents"], keep_data_of.files["raw"]
    return manifest.replace(
        format=FORMAT,
        generation=generation,
        files=files,
        index=dataclasses.replace(manifest.index, path=files["index"]),
        calibration=dataclasses.replace(manifest.calibration, file=files["calibration"]),
    )


def upgrade_data(folder: Path, current: Manifest, generation: int) -> tuple[list[Path], list[Segment]]:
    """Link (or copy) an index's documents and raw embeddings into generation ``generation``'s
    folders; returns the new folders and the segments."""
    folder = Path(folder)
    files = generation_files(generation)
    paths = [folder / files["documents"], folder / files["raw"]]
    clear(paths)
    segments = link_data(folder, current, paths[0], paths[1])
    return paths, segments


def _segment_sources(folder: Path, manifest: Manifest) -> list[tuple[str, int | None, Path, Path]]:
    """``(name, rows, documents file, raw folder)`` of each segment of the manifest's generation."""
    files = files_of(folder, manifest)
    if manifest.is_legacy:
        return [("0", None, files["documents"], files["raw"])]
    return [
        (s.name, s.rows, files["documents"] / f"{s.name}.parquet", files["raw"] / s.name)
        for s in manifest.segments or ()
    ]


def link_data(folder: Path, current: Manifest, documents: Path, raw: Path) -> list[Segment]:
    """Hard-link (or copy) every segment of ``current`` into new ``documents`` and ``raw`` folders,
    with the rows it deleted; returns the segments."""
    from ..index.exact import link_or_copy

    documents.mkdir(parents=True, exist_ok=True)
    raw.mkdir(parents=True, exist_ok=True)
    segments = []
    for name, rows, table, embeddings in _segment_sources(folder, current):
        link_or_copy(table, documents / f"{name}.parquet")
        (raw / name).mkdir(exist_ok=True)
        for p in sorted(embeddings.glob("*.npy")):
            link_or_copy(p, raw / name / p.name)
        if rows is None:
            import pyarrow.parquet as pq

            rows = pq.read_metadata(table).num_rows
        segments.append(Segment(name, rows))
    deleted = files_of(folder, current)["documents"] / "deleted.npy"
    if not current.is_legacy and deleted.is_file():
        link_or_copy(deleted, documents / "deleted.npy")
    return segments


# -- reading and writing the parts -----------------------------------------------------------------


def document_table(docs: Sequence[Document]):
    """The document table (Arrow): id, modality, text and media paths of each document, in index
    order, then one typed column per metadata field. Integers and decimals together become
    decimals; lists and objects are kept as JSON text; any other mix of kinds in one field is an
    ``InputError`` naming the field and a document of each kind."""
    import pyarrow as pa

    n = len(docs)
    parts = {"text": pa.array(list(map(attrgetter("text"), docs)), type=pa.string())}
    for m in MEDIA:  # one attribute fetch per document (a list, then Arrow at C speed), no per-document calls
        paths = list(map(attrgetter(m), docs))
        parts[m] = (
            pa.nulls(n, pa.string())
            if paths.count(None) == n
            else pa.array([None if p is None else str(p) for p in paths], type=pa.string())
        )
    columns = {"id": pa.array(list(map(attrgetter("id"), docs)), type=pa.string()), "modality": _modality(parts, n)}
    columns.update(parts)
    names: dict[str, None] = {}
    for d in docs:
        if d.metadata:
            names.update(dict.fromkeys(d.metadata))
    for name in names:
        columns[name] = _metadata_column(name, docs)
    return pa.table(columns)


_KINDS = {bool: "a boolean", int: "an integer", float: "a decimal number", str: "text"}


def _modality(parts: dict, n: int):
    """``Document.modality`` of every row, from which part columns are set: the one part's name,
    or ``multimodal`` for several (computed on the columns' null masks, not per document)."""
    import pyarrow as pa

    have = np.stack([np.asarray(parts[m].is_valid()) for m in MODALITIES]) if n else np.zeros((4, 0), bool)
    names = np.array([*MODALITIES, "multimodal"], dtype=object)
    which = np.where(have.sum(axis=0) == 1, np.argmax(have, axis=0), len(MODALITIES))
    return pa.array(names[which], type=pa.string())


def _metadata_column(name: str, docs: Sequence[Document]):
    import pyarrow as pa

    values = [d.metadata.get(name) for d in docs]
    types = set(map(type, values))
    if types & {list, dict}:
        values = [json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v for v in values]
        types = set(map(type, values))
    kinds = {_KINDS.get(t, t.__name__) for t in types if t is not type(None)}
    arrow_type = {
        frozenset(): pa.string(),
        frozenset({"a boolean"}): pa.bool_(),
        frozenset({"an integer"}): pa.int64(),
        frozenset({"a decimal number"}): pa.float64(),
        frozenset({"an integer", "a decimal number"}): pa.float64(),
        frozenset({"text"}): pa.string(),
    }.get(frozenset(kinds))
    if arrow_type is None:  # the error names the first document of each kind, in the order they come
        seen: dict[str, Document] = {}
        for d, value in zip(docs, values):
            if value is not None:
                seen.setdefault(_KINDS.get(type(value), type(value).__name__), d)
        examples = "; ".join(f"{kind} in document {d.id!r} ({d.where or 'given'})" for kind, d in seen.items())
        raise InputError(f"metadata field {name!r} holds values of different kinds: {examples}; make them one kind")
    try:
        return pa.array(values, type=arrow_type)
    except (pa.ArrowInvalid, OverflowError) as err:
        raise InputError(f"metadata field {name!r} cannot be stored ({err})") from None


def document_counts(table) -> DocumentCounts:
    """The live documents of a document table, in all and per modality (counted in Arrow)."""
    import pyarrow.compute as pc

    counts = {str(c["values"]): int(c["counts"]) for c in pc.value_counts(table["modality"]).to_pylist()}
    return DocumentCounts.from_dict({"total": table.num_rows, **{m: counts.get(m, 0) for m in DOCUMENT_MODALITIES}})


def check_metadata_types(existing, added, where: str) -> None:
    """Refuse added documents whose metadata field has another kind than the index stores."""
    import pyarrow as pa

    def numeric(t) -> bool:
        return pa.types.is_integer(t) or pa.types.is_floating(t)

    types = {f.name: f.type for f in existing}
    for f in added:
        old = types.get(f.name)
        if old is None or old == f.type or pa.types.is_null(old) or (numeric(old) and numeric(f.type)):
            continue
        raise InputError(
            f"{where}: metadata field {f.name!r} is {f.type} in the added documents but {old} in the index; "
            "give it values of the kind the index holds"
        )


def write_documents(path: Path, docs: Sequence[Document]):
    """Write the document table (see ``document_table``) as Parquet; returns it."""
    table = document_table(docs)
    write_table(path, table)
    return table


def write_table(path: Path, table) -> None:
    """Write a document table (Arrow) as Parquet."""
    import pyarrow.parquet as pq

    pq.write_table(table, path)


def read_documents(path: Path):
    """The document table (Arrow) of one Parquet file."""
    import pyarrow.parquet as pq

    try:
        # one file: ParquetFile reads it without pyarrow.dataset, which imports pandas (0.5 s cold)
        return pq.ParquetFile(path).read()
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


def field_columns(table) -> dict:
    """The per-document fields an index keeps for filters: ``modality`` and every metadata column."""
    return {name: table[name] for name in table.column_names if name not in OWN_COLUMNS or name == "modality"}


class SegmentRows:
    """Raw embeddings of one modality over several segments, live rows only, read on demand
    (``rows[a:b]`` gathers them; segments without the modality give zero rows)."""

    def __init__(self, parts: list, counts: list[int], live: np.ndarray | None, dim: int):
        self.parts, self.live, self.dim = parts, live, dim
        self.offsets = np.cumsum([0, *counts])
        n = int(self.offsets[-1]) if live is None else len(live)
        self.shape = (n, dim)
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        index = np.arange(self.shape[0])[key]
        scalar = np.ndim(index) == 0
        rows = np.atleast_1d(index if self.live is None else self.live[index])
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        for i, part in enumerate(self.parts):
            first, stop = self.offsets[i], self.offsets[i + 1]
            chosen = (rows >= first) & (rows < stop)
            if part is not None and chosen.any():
                local = rows[chosen] - first
                contiguous = local[-1] - local[0] + 1 == len(local)
                out[chosen] = part[local[0] : local[-1] + 1] if contiguous else part[local]
        return out[0] if scalar else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)


class Columns(Mapping):
    """The document table's columns as Python lists, each converted from Arrow on first use and
    kept: a change or a search pays only for the columns it reads, never for the whole table."""

    def __init__(self, table):
        self.table = table
        self._lists: dict[str, list] = {}
        self._arrays: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> list:
        if name not in self._lists:
            if name not in self.table.column_names:
                raise KeyError(name)
            self._lists[name] = self.table[name].to_pylist()
        return self._lists[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.column_names)

    def __contains__(self, name: object) -> bool:  # without converting the column
        return name in self.table.column_names

    def __len__(self) -> int:
        return self.table.num_columns

    def array(self, name: str) -> np.ndarray:
        """A column as a numpy array (``np.asarray`` of its list), converted once."""
        if name not in self._arrays:
            self._arrays[name] = np.asarray(self[name])
        return self._arrays[name]


@dataclass
class Data:
    """The documents and raw embeddings of a generation: its segments, the rows deleted, and the
    live rows' table (Arrow), columns (``Columns``, converted on demand) and raw embeddings (in row order)."""

    segments: list[Segment]
    deleted: np.ndarray | None
    table: Any  # a pyarrow Table (pyarrow is imported only when an index is read)
    documents: Columns
    raw: dict[str, np.ndarray]

    @property
    def stored(self) -> int:
        """Rows stored over all segments, deleted ones too."""
        return sum(s.rows for s in self.segments)


def read_data(folder: Path, manifest: Manifest, table: Any = None) -> Data:
    """The documents and raw embeddings of the manifest's generation (any readable format).
    ``table``: its live rows' document table, when the caller already holds it (a change that
    just wrote the generation): then only the raw embeddings are mapped, no table is read back."""
    import pyarrow as pa

    sources = _segment_sources(folder, manifest)
    raws = [read_raw(embeddings) for _, _, _, embeddings in sources]
    if table is None or manifest.is_legacy:
        tables = [read_documents(path) for _, _, path, _ in sources]
        counts = [t.num_rows for t in tables]
    else:
        tables, counts = None, [s.rows for s in manifest.segments or ()]
    segments = [Segment(name, n) for (name, _, _, _), n in zip(sources, counts)]
    deleted = None
    path = files_of(folder, manifest)["documents"] / "deleted.npy"
    if not manifest.is_legacy and path.is_file():
        try:
            rows = np.load(path)
            deleted = np.zeros(sum(counts), dtype=bool)
            deleted[rows] = True
        except (OSError, ValueError, IndexError) as err:
            raise VectorIndexError(f"{path}: unreadable deleted rows ({err})") from None
    live = None if deleted is None else np.flatnonzero(~deleted)
    if tables is not None:
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
        if live is not None:
            table = table.take(live)
    raw: dict[str, np.ndarray] = {}
    for m in dict.fromkeys(m for r in raws for m in r):
        parts = [r.get(m) for r in raws]
        if len(parts) == 1 and live is None:
            raw[m] = parts[0]  # type: ignore[assignment]
        else:
            dim = next(p.shape[1] for p in parts if p is not None)
            raw[m] = SegmentRows(parts, counts, live, dim)  # type: ignore[assignment]
    return Data(segments, deleted, table, Columns(table), raw)


def open_vector_index(folder: Path, manifest: Manifest, documents: Mapping[str, list]) -> VectorIndex:
    """The vector index of the manifest's generation, of the kind the manifest names."""
    path = files_of(folder, manifest)["index"]
    if manifest.format == FORMAT_1:  # an exact index at the top; modality from the documents
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
    return load_index(path, manifest.index.kind)


def ids_checksum(ids: Any) -> str:
    """sha256 of the ids in order: ties the document table to the vectors. ``ids``: a list of
    strings, or an Arrow string column (hashed in Arrow, no Python list: the same digest)."""
    import pyarrow as pa

    if not isinstance(ids, (pa.Array, pa.ChunkedArray)):
        return _ids_checksum_python(ids)
    column = ids.cast(pa.string())
    if column.null_count:
        return _ids_checksum_python(column.to_pylist())
    chunks = [c for c in (column.chunks if isinstance(column, pa.ChunkedArray) else [column]) if len(c)]
    special = np.array([_escaped_bytes(c).any() for c in chunks], dtype=bool)
    if special.any():  # a quote, a backslash or a control in some id: json's own escaping, on a list
        return _ids_checksum_python(column.to_pylist())
    # json.dumps(ids, ensure_ascii=False) is then '["a", "b"]', the ids as they are: laid out in numpy
    # (Arrow's string join would take Python string scalars, and pa.scalar imports pandas)
    digest = hashlib.sha256(b"[")
    for i, chunk in enumerate(chunks):
        data = _quoted(chunk)
        digest.update((data[:-2] if i == len(chunks) - 1 else data).data)  # no ", " after the last id
    digest.update(b"]")
    return digest.hexdigest()


def _quoted(array) -> np.ndarray:
    """``"id", `` for every id of a string array, back to back: 4 bytes added around each."""
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    offsets = offsets.astype(np.int64) - offsets[0]
    rows = np.arange(len(array), dtype=np.int64)
    out = np.empty(int(offsets[-1]) + 4 * len(array), dtype=np.uint8)
    starts, ends = offsets[:-1] + 4 * rows, offsets[1:] + 4 * rows  # where each quoted id starts, its text ends
    out[starts] = ord('"')
    out[ends + 1], out[ends + 2], out[ends + 3] = ord('"'), ord(","), ord(" ")
    data = _utf8_bytes(array)
    text = np.ones(len(out), dtype=bool)
    text[starts] = False
    text[ends + 1], text[ends + 2], text[ends + 3] = False, False, False
    out[text] = data
    return out


#: Bytes json.dumps escapes in a string: controls, the quote and the backslash (UTF-8 sequences of
#: other characters never hold a byte below 0x80, so a byte test is exact).
_JSON_ESCAPED = np.zeros(256, dtype=bool)
_JSON_ESCAPED[[*range(0x20), ord('"'), ord("\\")]] = True


def _utf8_bytes(array) -> np.ndarray:
    """The UTF-8 bytes of a string array's values, back to back (no copy)."""
    _, offsets_buffer, data = array.buffers()
    if data is None:  # only empty strings
        return np.zeros(0, dtype=np.uint8)
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    return np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]


def _escaped_bytes(array) -> np.ndarray:
    return _JSON_ESCAPED[_utf8_bytes(array)]


def _ids_checksum_python(ids: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(ids), ensure_ascii=False).encode("utf-8")).hexdigest()


def check_integrity(
    folder: Path, manifest: Manifest, documents: Columns, raw: dict[str, np.ndarray], index: VectorIndex
) -> None:
    """Refuse an index whose parts do not belong together (rows reordered, a file swapped)."""
    ids = documents["id"]
    n = len(ids)
    problems = []
    expected = manifest.ids_sha256
    if expected is not None and ids_checksum(documents.table["id"]) != expected:
        problems.append("the document table's ids are not the ones the index was built with")
    index_ids = getattr(index, "ids", None)
    if index_ids is not None and list(index_ids) != list(ids):
        problems.append("the vector index's ids differ from the document table's (order or content)")
    if len(index) != n:
        problems.append(f"the vector index holds {len(index)} vectors for {n} documents")
    if manifest.documents is not None and manifest.documents.total != n:
        problems.append(f"the manifest counts {manifest.documents.total} documents, the table {n}")
    dim = manifest.model.dim
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

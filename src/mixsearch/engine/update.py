"""Changing an index in place: add documents (new ids added, existing ids replaced) and delete them.

Each change is one new generation committed with one rename under the folder's write lock (see
``store``): segments already stored are hard-linked, never rewritten, so an add costs about its
own size. New documents are encoded with the index's own model and fused with its *existing*
calibration and alpha: an add never refits the calibration (``recalibrate`` does, explicitly).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..embedding import open_cache
from ..errors import InputError, UsageError
from ..index.base import positions_of
from ..types import Document
from . import documents, store
from .fuse import fuse_documents, require_roles
from .manifest import Manifest, Segment
from .reports import UpdateReport

if TYPE_CHECKING:
    from ..index import VectorIndex
    from .mixindex import MixIndex

log = logging.getLogger(__name__)

#: A change that leaves more than this share of the stored rows deleted compacts the index.
COMPACT_ABOVE = 0.5

__all__ = ["UpdateReport", "add_documents", "delete_documents"]


def add_documents(
    index: MixIndex,
    corpus: str | Path | Sequence[Document],
    *,
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
) -> tuple[UpdateReport, MixIndex]:
    """Encode ``corpus`` with the index's model and add it to ``index``'s folder; returns the
    report and the index in its new state (``MixIndex.add`` shows it through ``index``)."""
    import pyarrow as pa

    started = time.perf_counter()
    _check_writable(index)
    encoder = index.encoder  # the index's recorded model; another fingerprint or dim is refused
    report = UpdateReport()
    docs, corpus_name = documents.read(corpus, report, encoder)
    if not docs:
        raise InputError("\n".join([f"{corpus_name}: no documents to add", *report.problem_lines(10)]))
    # everything checkable before encoding: the metadata's kinds, the calibration's means
    table = store.document_table(docs)
    store.check_metadata_types(index.data.table.schema, table.schema, corpus_name)
    require_roles(
        index.calibrator, documents.table_roles(table, encoder), encoder.dim, documents.table_modalities(table)
    )
    folder = index.folder
    with store.transaction(folder, expected=index.manifest) as txn:
        current, generation, files = _current(txn), txn.generation, txn.paths
        segments = store.link_data(folder, current, files["documents"], files["raw"])
        segment = str(generation)
        (files["raw"] / segment).mkdir()
        cache = open_cache(encoder, cache_dir)
        try:
            docs, table, raw, present = documents.encode(
                docs, table, encoder, cache, files["raw"] / segment, report, progress
            )
        finally:
            cache.close()
        report.skipped += len(report.skipped_ids)
        if not docs:
            raise InputError("\n".join([f"{corpus_name}: no documents to add", *report.problem_lines(10)]))
        vectors = fuse_documents(index.calibrator, index.alpha, raw, present, len(docs), encoder.dim)
        store.write_table(files["documents"] / f"{segment}.parquet", table)
        segments.append(Segment(segment, len(docs)))
        ids = table["id"].to_pylist()  # the change's ids only
        live, replaced = _stored_rows(index, ids)
        vector_index = _vector_index(index, current)
        vector_index.add(vectors, ids, _fields_for(index, table))
        deleted = _deleted(index.data, replaced, len(docs))
        report.added, report.replaced = len(docs), len(replaced)
        kept = _without(index.data.table, live)
        after = pa.concat_tables([kept, table], promote_options="permissive")
        manifest, vector_index, after = _finish(
            index, current, generation, files, segments, deleted, vector_index, after
        )
        report.compacted = manifest.compacted_at == generation
        report.seconds = time.perf_counter() - started
        updated = {
            "at": _now(),
            "action": "add",
            "corpus": corpus_name,
            "added": report.added,
            "replaced": report.replaced,
            "seconds": round(report.seconds, 2),
        }
        changed = _commit(txn, index, manifest.replace(updated=updated), vector_index, after)
    log.info("%s: added %d documents (%d replaced)", folder, report.added, report.replaced)
    return report, changed


def delete_documents(index: MixIndex, ids: Iterable[str]) -> tuple[int, MixIndex | None]:
    """Delete documents by id from ``index``'s folder; returns how many were there, and the index
    in its new state (None when nothing was deleted)."""
    if isinstance(ids, str):
        raise UsageError("give the ids to delete as a list, not one string")
    ids = list(dict.fromkeys(ids))
    _check_writable(index)
    folder = index.folder
    with store.transaction(folder, expected=index.manifest) as txn:
        current = _current(txn)
        live, rows = _stored_rows(index, ids)
        if not len(rows):
            store.tidy(folder, current, None)  # what an earlier writer killed after its commit left
            return 0, None
        files = txn.paths
        segments = store.link_data(folder, current, files["documents"], files["raw"])
        vector_index = _vector_index(index, current)
        vector_index.delete(ids)
        deleted = _deleted(index.data, rows, 0)
        after = _without(index.data.table, live)
        manifest, vector_index, after = _finish(
            index, current, txn.generation, files, segments, deleted, vector_index, after
        )
        updated = {"at": _now(), "action": "delete", "deleted": len(rows)}
        changed = _commit(txn, index, manifest.replace(updated=updated), vector_index, after)
    log.info("%s: deleted %d documents", folder, len(rows))
    return len(rows), changed


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _current(txn: store.Transaction) -> Manifest:
    assert txn.current is not None  # the transaction checked it is the state the index was opened at
    return txn.current


def _fields_for(index: MixIndex, table) -> dict:
    """The added documents' fields, with a null column for each field of the index they lack."""
    import pyarrow as pa

    fields = store.field_columns(table)
    schema = index.data.table.schema
    for name in index.metadata_fields:
        if name not in fields:
            fields[name] = pa.nulls(table.num_rows, schema.field(name).type)
    return fields


def _check_writable(index: MixIndex) -> None:
    if index.is_view:
        raise UsageError("this is a view under another calibration; persist it first, or add to the index as opened")


def _stored_rows(index: MixIndex, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Where the live documents with these ids are: their positions among the live rows, and over
    all stored rows (deleted ones too); one vectorised lookup in the Arrow id column."""
    live = positions_of(index.data.table["id"], set(ids))
    deleted = index.data.deleted
    return live, (live if deleted is None else np.flatnonzero(~deleted)[live])


def _without(table, rows: np.ndarray):
    """The table without the rows at these positions."""
    if not len(rows):
        return table
    keep = np.ones(table.num_rows, dtype=bool)
    keep[rows] = False
    return table.filter(keep)


def _vector_index(index: MixIndex, current: Manifest) -> VectorIndex:
    """The vector index to change: the one in memory, copied, when its kind can be copied without
    touching the original (``snapshot``), else read again from the folder."""
    snapshot = getattr(index.index, "snapshot", None)
    if snapshot is not None:
        return snapshot()
    return store.open_vector_index(index.folder, current, index.documents)


def _deleted(data: store.Data, rows: np.ndarray, added: int) -> np.ndarray:
    """The deleted mask after a change: the old one, ``rows`` more, and ``added`` new live rows."""
    deleted = np.zeros(data.stored + added, dtype=bool)
    if data.deleted is not None:
        deleted[: data.stored] = data.deleted
    deleted[rows] = True
    return deleted


def _finish(
    index: MixIndex,
    current: Manifest,
    generation: int,
    files: dict[str, Path],
    segments: list[Segment],
    deleted: np.ndarray,
    vector_index,
    table,
) -> tuple[Manifest, VectorIndex, Any]:
    """Write the deleted rows, the index and the calibration of the new generation (compacting
    everything when most stored rows are deleted); returns its manifest, vector index and the
    document table of its live rows (``table``, in Arrow: nothing is read back)."""
    from ..calibration import save_calibration
    from ..index import build_index_of_kind

    compact = deleted.mean() > COMPACT_ABOVE if len(deleted) else False
    (files["documents"] / "deleted.npy").unlink(missing_ok=True)
    if compact:
        segments = _compact(files, segments, deleted)
        table = store.read_documents(files["documents"] / f"{segments[0].name}.parquet")
        live_ids = table["id"].to_pylist()
        vectors = np.asarray(vector_index.vectors) if hasattr(vector_index, "vectors") else None
        if vectors is not None and list(vector_index.ids) == live_ids:
            vector_index = build_index_of_kind(
                current.index.kind, vectors, live_ids, store.field_columns(table), options=vector_index.options
            )
    elif deleted.any():
        np.save(files["documents"] / "deleted.npy", np.flatnonzero(deleted).astype(np.int64))
    vector_index.save(files["index"])
    save_calibration(index.calibrator, files["calibration"])
    manifest = store.record_files(current, generation).replace(
        segments=tuple(segments),
        integrity={"ids_sha256": store.ids_checksum(table["id"])},
        documents=store.document_counts(table),
        **({"compacted_at": generation} if compact else {}),
    )
    return manifest, vector_index, table


def _compact(files: dict[str, Path], segments: list[Segment], deleted: np.ndarray) -> list[Segment]:
    """Replace the linked segments by one segment of the live rows (documents and raw embeddings)."""
    import pyarrow as pa

    from .store import SegmentRows, clear

    docs_dir, raw_dir = files["documents"], files["raw"]
    tables = [store.read_documents(docs_dir / f"{s.name}.parquet") for s in segments]
    raws = [store.read_raw(raw_dir / s.name) for s in segments]
    live = np.flatnonzero(~deleted)
    table = pa.concat_tables(tables, promote_options="permissive").take(live)
    name = f"{segments[-1].name}c"
    (raw_dir / name).mkdir()
    for m in dict.fromkeys(m for r in raws for m in r):
        parts = [r.get(m) for r in raws]
        dim = next(p.shape[1] for p in parts if p is not None)
        rows = SegmentRows(parts, [s.rows for s in segments], live, dim)
        out = np.lib.format.open_memmap(raw_dir / name / f"{m}.npy", "w+", np.float32, rows.shape)
        for start in range(0, len(rows), 65536):
            out[start : start + 65536] = rows[start : start + 65536]
        out.flush()
        del out
    del raws
    store.write_table(docs_dir / f"{name}.parquet", table)
    clear([docs_dir / f"{s.name}.parquet" for s in segments] + [raw_dir / s.name for s in segments])
    return [Segment(name, table.num_rows)]


def _commit(txn: store.Transaction, index: MixIndex, manifest: Manifest, vector_index: VectorIndex, table) -> MixIndex:
    """Commit the new generation and return the index in it: the vector index just written and
    the live rows' document table are kept in memory (only the raw embeddings are mapped again),
    as reading a large index back costs many times the change itself. The transaction tidies the
    old generation after."""
    txn.commit(manifest)
    data = store.read_data(index.folder, manifest, table=table)
    return type(index)(  # MixIndex, without importing the module that imports this one
        index.folder, manifest, data, index.calibrator, vector_index, device=index.device, runtime=index.runtime
    )

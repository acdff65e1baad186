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
from typing import TYPE_CHECKING

import numpy as np

from ..embedding import open_cache
from ..errors import InputError, UsageError
from ..index.base import positions_of
from ..types import Document
from . import documents, store
from .fuse import fuse_documents, require_roles
from .manifest import DocumentCounts, Manifest, Segment
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
    started = time.perf_counter()
    _check_writable(index)
    encoder = index.encoder  # the index's recorded model; another fingerprint or dim is refused
    report = UpdateReport()
    docs, corpus_name = documents.read(corpus, report, encoder)
    if not docs:
        raise InputError("\n".join([f"{corpus_name}: no documents to add", *report.problem_lines(10)]))
    # everything checkable before encoding: the calibration's means, the metadata's kinds
    require_roles(index.calibrator, documents.part_roles(docs, encoder), encoder.dim, {d.modality for d in docs})
    store.check_metadata_types(index.data.table.schema, store.document_table(docs).schema, corpus_name)
    folder = index.folder
    with store.transaction(folder, expected=index.manifest) as txn:
        current, generation, files = _current(txn), txn.generation, txn.paths
        segments = store.link_data(folder, current, files["documents"], files["raw"])
        segment = str(generation)
        (files["raw"] / segment).mkdir()
        cache = open_cache(encoder, cache_dir)
        try:
            docs, raw = documents.encode(docs, encoder, cache, files["raw"] / segment, report, progress)
        finally:
            cache.close()
        report.skipped += len(report.skipped_ids)
        if not docs:
            raise InputError("\n".join([f"{corpus_name}: no documents to add", *report.problem_lines(10)]))
        present = documents.presence_of(docs, raw)
        vectors = fuse_documents(index.calibrator, index.alpha, raw, present, len(docs), encoder.dim)
        table = store.document_table(docs)
        store.write_table(files["documents"] / f"{segment}.parquet", table)
        segments.append(Segment(segment, len(docs)))
        ids = [d.id for d in docs]
        replaced = _stored_rows(index, ids)
        vector_index = store.open_vector_index(folder, current, index.documents)
        vector_index.add(vectors, ids, _fields_for(index, table))
        deleted = _deleted(index.data, replaced, len(docs))
        report.added, report.replaced = len(docs), len(replaced)
        manifest, vector_index = _finish(index, current, generation, files, segments, deleted, vector_index, added=docs)
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
        changed = _commit(txn, index, manifest.replace(updated=updated), vector_index)
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
        rows = _stored_rows(index, ids)
        if not rows:
            store.tidy(folder, current, None)  # what an earlier writer killed after its commit left
            return 0, None
        files = txn.paths
        segments = store.link_data(folder, current, files["documents"], files["raw"])
        vector_index = store.open_vector_index(folder, current, index.documents)
        vector_index.delete(ids)
        deleted = _deleted(index.data, rows, 0)
        manifest, vector_index = _finish(index, current, txn.generation, files, segments, deleted, vector_index)
        updated = {"at": _now(), "action": "delete", "deleted": len(rows)}
        changed = _commit(txn, index, manifest.replace(updated=updated), vector_index)
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


def _stored_rows(index: MixIndex, ids: Sequence[str]) -> list[int]:
    """Positions over all stored rows (deleted ones too) of the live documents with these ids."""
    deleted = index.data.deleted
    live = np.arange(index.data.stored) if deleted is None else np.flatnonzero(~deleted)
    return [int(r) for r in live[positions_of(index.data.table["id"], set(ids))]]


def _deleted(data: store.Data, rows: list[int], added: int) -> np.ndarray:
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
    added: Sequence[Document] | None = None,
) -> tuple[Manifest, VectorIndex]:
    """Write the deleted rows, the index and the calibration of the new generation (compacting
    everything when most stored rows are deleted); returns its manifest and vector index."""
    from ..calibration import save_calibration
    from ..index import build_index_of_kind

    compact = deleted.mean() > COMPACT_ABOVE if len(deleted) else False
    (files["documents"] / "deleted.npy").unlink(missing_ok=True)
    if compact:
        segments = _compact(files, segments, deleted)
        live_ids = [
            str(i) for i in store.read_documents(files["documents"] / f"{segments[0].name}.parquet")["id"].to_pylist()
        ]
        vectors = np.asarray(vector_index.vectors) if hasattr(vector_index, "vectors") else None
        if vectors is not None and list(vector_index.ids) == live_ids:
            table = store.read_documents(files["documents"] / f"{segments[0].name}.parquet")
            vector_index = build_index_of_kind(
                current.index.kind, vectors, live_ids, store.field_columns(table), options=vector_index.options
            )
    elif deleted.any():
        np.save(files["documents"] / "deleted.npy", np.flatnonzero(deleted).astype(np.int64))
    vector_index.save(files["index"])
    save_calibration(index.calibrator, files["calibration"])
    live_ids, modality = _live_rows(index, deleted, added or [])
    manifest = store.record_files(current, generation).replace(
        segments=tuple(segments),
        integrity={"ids_sha256": store.ids_checksum(live_ids)},
        documents=DocumentCounts.of(modality),
        **({"compacted_at": generation} if compact else {}),
    )
    return manifest, vector_index


def _live_rows(index: MixIndex, deleted: np.ndarray, added: Sequence[Document]) -> tuple[list[str], np.ndarray]:
    """The ids and modalities of the new generation's live documents, in row order, from the
    document data (every index kind keeps its rows in this order; not all of them can list ids)."""
    stored = index.data.stored
    ids = np.empty(stored + len(added), dtype=object)
    modality = np.empty(stored + len(added), dtype=object)
    before = np.arange(stored) if index.data.deleted is None else np.flatnonzero(~index.data.deleted)
    ids[before], modality[before] = index.ids, index.modality
    ids[stored:] = [d.id for d in added]
    modality[stored:] = [d.modality for d in added]
    return [str(i) for i in ids[~deleted]], modality[~deleted].astype(str)


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


def _commit(txn: store.Transaction, index: MixIndex, manifest: Manifest, vector_index: VectorIndex) -> MixIndex:
    """Commit the new generation and return the index in it (the vector index just written is
    kept in memory; only the document data is read back, as a full reopen costs several times
    the change itself on a large index). The transaction tidies the old generation after."""
    txn.commit(manifest)
    data = store.read_data(index.folder, manifest)
    return type(index)(  # MixIndex, without importing the module that imports this one
        index.folder, manifest, data, index.calibrator, vector_index, device=index.device, runtime=index.runtime
    )

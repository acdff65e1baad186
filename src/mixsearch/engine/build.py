"""Building an index: read a corpus, encode every part of every document (through the embedding
cache, so an interrupted build resumes), calibrate, fuse, and write the index folder.

The new index is one ``store.transaction``: a new generation in ``out``, committed with one
rename only when complete, so a failed or interrupted build never damages an existing index.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .._version import __version__
from ..calibration import Calibrator, save_calibration
from ..embedding import EmbeddingCache, open_cache
from ..embedding.distributed import RayOptions, fill_cache_on_ray, ray_options
from ..encoders import Encoder, load_encoder
from ..errors import InputError, require
from ..index import build_index_of_kind
from ..index.base import check_index_options
from ..types import MODALITIES, Document
from . import documents, store
from .fuse import CalibrationSpec, fuse_documents, prepare_calibration, require_roles, resolve_calibration
from .manifest import CalibrationRecord, IndexRecord, Manifest, ModelRecord, Segment
from .mixindex import MixIndex, open_index
from .reports import BuildReport

log = logging.getLogger(__name__)


def build_index(
    corpus: str | Path | Sequence[Document],
    out: str | Path,
    encoder: Encoder | str,
    *,
    calibration: CalibrationSpec = None,
    alpha: float = 0.5,
    method: str | None = None,
    kind: str = "exact",
    index_options: Mapping[str, object] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
    ray: RayOptions | str | bool | None = None,
) -> tuple[MixIndex, BuildReport]:
    """Encode, calibrate, fuse and write an index folder; returns it opened, with a report.

    ``corpus``: a JSON Lines file, a folder of files, or ``Document`` objects.
    ``calibration``: a ``Calibrator``, a calibration file, ``"none"`` (plain CLIP), or None to
    fit document means on this corpus (the query mean then borrows the text mean).
    ``method``: the calibration method (``calibration.METHODS``; default ``mean`` when fitting on
    the corpus, else the calibration's own), applied to the given or fitted statistics.
    ``kind``: the vector index kind (see ``mixsearch.index.INDEX_KINDS``); ``index_options``: its
    settings (recorded in the manifest, and used again whenever the index is rebuilt).
    ``ray``: encode the items missing from the embedding cache on a Ray cluster first (an
    address such as ``"auto"``, ``"local"`` or ``"ray://host:10001"``, True, or ``RayOptions``;
    see ``mixsearch.embedding.distributed``); the rest of the build then runs here as usual.

    Everything that can be checked is checked before encoding (the folder, alpha, the kind, the
    calibration against the model and the corpus's modalities). The build writes a new generation
    into ``out`` and commits it with one rename, holding the folder's write lock: a failed or
    interrupted build leaves the previous index as it was, and a rerun resumes from the cache.
    """
    started = time.perf_counter()
    out = Path(out)
    store.check_out_folder(out, corpus)
    check_index_options(kind, index_options)  # an unknown kind, or an unreachable server, fails before any work
    on_ray = ray_options(ray)
    if on_ray:  # a missing extra fails now, not after the corpus is read
        require("ray.data", "ray", "encoding on a Ray cluster")
    Calibrator(alpha=alpha).check_params()  # so does an impossible alpha
    encoder = load_encoder(encoder) if isinstance(encoder, str) else encoder
    prepared, source = prepare_calibration(calibration, encoder.info(), alpha, method)
    with store.transaction(out, fresh=not out.exists()) as txn:
        files, generation = txn.paths, txn.generation
        fused_path = txn.scratch(f"fused-{generation}.npy")
        report = BuildReport()
        for leftover in store.leftovers_of_0_1(out):
            report.notes.append(
                f"{leftover} looks like a folder mixsearch 0.1 left behind; delete it if you do not need it"
            )
        docs, corpus_name = documents.read(corpus, report, encoder)
        if not docs:
            raise _nothing_to_index(corpus_name, report)
        table = store.document_table(docs)  # metadata of mixed kinds fails here, before any encoding
        if prepared is not None:  # so does a missing mean, not after hours of encoding
            require_roles(
                prepared, documents.table_roles(table, encoder), encoder.dim, documents.table_modalities(table)
            )
        segment = str(generation)
        files["documents"].mkdir()
        (files["raw"] / segment).mkdir(parents=True)
        cache = open_cache(encoder, cache_dir)
        try:
            ray_rows = _encode_on_ray(docs, encoder, cache, on_ray, report, progress) if on_ray else 0
            docs, table, raw, present = documents.encode(
                docs, table, encoder, cache, files["raw"] / segment, report, progress
            )
            report.from_cache -= ray_rows  # encoded on Ray in this build, then read back from the cache
        finally:
            cache.close()
        report.skipped += len(report.skipped_ids)
        if not docs:
            raise _nothing_to_index(corpus_name, report)
        if prepared is None:  # fit on this corpus, now that it is encoded
            calibrator, source = resolve_calibration(None, encoder.info(), raw, present, alpha, report.notes, method)
        else:
            calibrator = prepared
        # fused into a memory map, so a large corpus never needs its vectors in RAM at once
        fused = np.lib.format.open_memmap(fused_path, "w+", np.float32, (len(docs), encoder.dim))
        fuse_documents(calibrator, alpha, raw, present, len(docs), encoder.dim, out=fused)
        ids = table["id"].to_pylist()
        index = build_index_of_kind(kind, fused, ids, store.field_columns(table), options=index_options)
        store.write_table(files["documents"] / f"{segment}.parquet", table)
        save_calibration(calibrator, files["calibration"])
        index.save(files["index"])
        index_options = index.options
        del index, fused, ids
        fused_path.unlink()
        report.indexed = len(docs)
        report.seconds = time.perf_counter() - started
        record = _manifest(corpus_name, encoder, kind, index_options, calibrator, source, table, report)
        manifest = store.record_files(record, generation).replace(
            segments=(Segment(segment, len(docs)),), integrity={"ids_sha256": store.ids_checksum(table["id"])}
        )
        txn.commit(manifest)
    log.info("indexed %d documents into %s", len(docs), out)
    return open_index(out, encoder=encoder), report


def _nothing_to_index(corpus_name: str, report: BuildReport) -> InputError:
    """The error of a corpus with nothing left to index, with why (the first problems)."""
    return InputError("\n".join([f"{corpus_name}: no documents to index", *report.problem_lines(10)]))


def _manifest(
    corpus_name: str,
    encoder: Encoder,
    kind: str,
    index_options: Mapping[str, object] | None,
    calibrator: Calibrator,
    source: str,
    table,
    report: BuildReport,
) -> Manifest:
    return Manifest(
        format=store.FORMAT,
        mixsearch_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        corpus=corpus_name,
        model=ModelRecord.from_dict(encoder.info()),
        index=IndexRecord(kind, dict(index_options or {})),
        calibration=CalibrationRecord.of(calibrator, source),
        documents=store.document_counts(table),
        build={
            "encoded": report.encoded,
            "from_cache": report.from_cache,
            "truncated": report.truncated,
            "skipped": report.skipped,
            "seconds": round(report.seconds, 2),
            "skipped_ids": report.skipped_ids,
            "problems": [str(p) for p in report.problems],
            "notes": report.notes,
        },
    )


def _encode_on_ray(
    docs: list[Document],
    encoder: Encoder,
    cache: EmbeddingCache,
    options: RayOptions,
    report: BuildReport,
    progress: bool | None,
) -> int:
    """Fill the cache with every document part on Ray; returns how many parts (with repeats) it
    encoded, which the local pass that follows then finds in the cache."""
    parts = {
        m: [getattr(d, m) if m == "text" else str(getattr(d, m)) for d in docs if getattr(d, m) is not None]
        for m in MODALITIES
    }
    run = fill_cache_on_ray(encoder, {m: v for m, v in parts.items() if v}, cache, options=options, progress=progress)
    report.encoded += run.encoded
    report.notes.append(run.note())
    return run.rows

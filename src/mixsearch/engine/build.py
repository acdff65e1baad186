"""Building an index: read a corpus, encode every part of every document (through the embedding
cache, so an interrupted build resumes), calibrate, fuse, and write the index folder.

The new index is written beside ``out`` (``out.building``) and swapped in only when complete, so
a failed or interrupted build never damages an existing index.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__
from ..calibration import Calibrator, save_calibration
from ..embedding import EmbeddingCache, embed, open_cache
from ..embedding.distributed import RayOptions, fill_cache_on_ray, ray_options
from ..encoders import Encoder, load_encoder
from ..errors import InputError, require
from ..index import build_index_of_kind
from ..index.base import check_index_options
from ..ingest import check_id, read_corpus
from ..types import DOCUMENT_MODALITIES, MODALITIES, Document, Problem
from . import store
from .fuse import CHUNK, CalibrationSpec, fuse_documents, prepare_calibration, require_roles, resolve_calibration
from .mixindex import MixIndex, calibration_record

log = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """What a build did: counts, and every problem with where it happened."""

    indexed: int = 0
    encoded: int = 0
    from_cache: int = 0
    truncated: int = 0
    skipped: int = 0  # documents (and corpus lines) left out, for any reason
    problems: list[Problem] = field(default_factory=list)
    skipped_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """A few lines for people: counts, then each problem (the first 50)."""
        lines = [
            f"indexed {self.indexed} documents in {self.seconds:.1f} s "
            f"({self.encoded} items encoded, {self.from_cache} from cache)"
        ]
        if self.truncated:
            lines.append(f"{self.truncated} texts were longer than the model's context and were truncated")
        return "\n".join(lines + self.problem_lines() + self.notes)

    def problem_lines(self, most: int = 50) -> list[str]:
        """How many documents were skipped, and each problem (the first ``most``)."""
        if not (self.skipped or self.problems):
            return []
        noun = "document" if self.skipped == 1 else "documents"
        lines = [f"{self.skipped} {noun} skipped; {len(self.problems)} problems:"]
        lines += [f"  - {p}" for p in self.problems[:most]]
        if len(self.problems) > most:
            lines.append(f"  ... and {len(self.problems) - most} more (all are in manifest.json)")
        return lines


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
    existed = out.exists()
    with store.writing(out):
        current = store.read_manifest(out) if store.is_index(out) else None
        generation = store.next_generation(current)
        files = {role: out / name for role, name in store.generation_files(generation).items()}
        fused_path = out / f"fused-{generation}.npy"
        store.clear([*files.values(), fused_path])  # orphans of a build that died at this generation
        report = BuildReport()
        for leftover in store.leftovers_of_0_1(out):
            report.notes.append(
                f"{leftover} looks like a folder mixsearch 0.1 left behind; delete it if you do not need it"
            )
        committed = False
        try:
            docs, corpus_name = _read(corpus, report, encoder)
            if not docs:
                raise _nothing_to_index(corpus_name, report)
            if prepared is not None:  # a missing mean fails now, not after hours of encoding
                require_roles(prepared, {m for d in docs for m in d.parts}, encoder.dim, {d.modality for d in docs})
            table = store.document_table(docs)  # so does metadata of mixed kinds
            segment = str(generation)
            files["documents"].mkdir()
            (files["raw"] / segment).mkdir(parents=True)
            cache = open_cache(encoder, cache_dir)
            try:
                read = len(docs)
                ray_rows = _encode_on_ray(docs, encoder, cache, on_ray, report, progress) if on_ray else 0
                docs, raw = _encode_documents(docs, encoder, cache, files["raw"] / segment, report, progress)
                report.from_cache -= ray_rows  # encoded on Ray in this build, then read back from the cache
            finally:
                cache.close()
            report.skipped += len(report.skipped_ids)
            if not docs:
                raise _nothing_to_index(corpus_name, report)
            present = {m: np.array([getattr(d, m) is not None for d in docs], dtype=bool) for m in raw}
            if prepared is None:  # fit on this corpus, now that it is encoded
                calibrator, source = resolve_calibration(
                    None, encoder.info(), raw, present, alpha, report.notes, method
                )
            else:
                calibrator = prepared
            # fused into a memory map, so a large corpus never needs its vectors in RAM at once
            fused = np.lib.format.open_memmap(fused_path, "w+", np.float32, (len(docs), encoder.dim))
            fuse_documents(calibrator, alpha, raw, present, len(docs), encoder.dim, out=fused)
            ids = [d.id for d in docs]
            if len(docs) != read:
                table = store.document_table(docs)
            index = build_index_of_kind(kind, fused, ids, store.field_columns(table), options=index_options)
            store.write_table(files["documents"] / f"{segment}.parquet", table)
            save_calibration(calibrator, files["calibration"])
            index.save(files["index"])
            index_options = index.options
            del index, fused
            fused_path.unlink()
            report.indexed = len(docs)
            report.seconds = time.perf_counter() - started
            record = _manifest(corpus_name, encoder, kind, index_options, calibrator, source, docs, report)
            manifest = store.record_files(record, generation)
            manifest["segments"] = [{"name": segment, "rows": len(docs)}]
            manifest["integrity"] = {"ids_sha256": store.ids_checksum(ids)}
            store.publish(out, manifest, list(files.values()))
            committed = True
            store.tidy(out, manifest, current)
        except BaseException:
            if not (committed or store.is_committed(out, generation)):  # drop the new generation's files
                store.clear([*files.values(), fused_path])
                if not existed:
                    shutil.rmtree(out, ignore_errors=True)
            raise
    log.info("indexed %d documents into %s", len(docs), out)
    return MixIndex(out, encoder=encoder), report


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
    docs: list[Document],
    report: BuildReport,
) -> dict:
    return {
        "format": store.FORMAT,
        "mixsearch": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        "corpus": corpus_name,
        "model": encoder.info(),
        "index": {"kind": kind, "options": dict(index_options or {})},
        "calibration": calibration_record(calibrator, source),
        "documents": {"total": len(docs), **{m: sum(d.modality == m for d in docs) for m in DOCUMENT_MODALITIES}},
        "build": {
            "encoded": report.encoded,
            "from_cache": report.from_cache,
            "truncated": report.truncated,
            "skipped": report.skipped,
            "seconds": round(report.seconds, 2),
            "skipped_ids": report.skipped_ids,
            "problems": [str(p) for p in report.problems],
            "notes": report.notes,
        },
    }


def _read(corpus: str | Path | Sequence[Document], report: BuildReport, encoder: Encoder) -> tuple[list[Document], str]:
    """The corpus's documents that this model can encode; everything else reported and counted as skipped."""
    if isinstance(corpus, (str, Path)):
        docs, name = list(read_corpus(corpus, report.problems.append)), os.path.abspath(corpus)
    else:
        docs, name, seen = [], "<documents>", set()
        for d in corpus:
            try:
                check_id(d.id)
            except InputError as err:
                report.problems.append(Problem(d.where or "<documents>", str(err), d.id))
                continue
            if d.id in seen:
                report.problems.append(Problem(d.where or d.id, "duplicate id; later document skipped", d.id))
                continue
            seen.add(d.id)
            docs.append(d)
    report.skipped = sum(p.skipped for p in report.problems)  # lines and documents dropped while reading
    kept = []
    for d in docs:
        missing = set(d.parts) - encoder.modalities
        if missing:
            report.problems.append(
                Problem(
                    d.where or d.id, f"model {encoder.name!r} cannot encode {', '.join(sorted(missing))}; skipped", d.id
                )
            )
            report.skipped += 1
        else:
            kept.append(d)
    return kept, name


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


def _encode_documents(
    docs: list[Document],
    encoder: Encoder,
    cache: EmbeddingCache,
    folder: Path,
    report: BuildReport,
    progress: bool | None,
) -> tuple[list[Document], dict[str, np.ndarray]]:
    """Encode every part of every document into ``folder/<modality>.npy`` (memory-mapped, zero
    rows where a document lacks the part); keep only the documents whose every part encoded."""
    modalities = [m for m in MODALITIES if any(getattr(d, m) is not None for d in docs)]
    ok = np.ones(len(docs), dtype=bool)
    everything = {}
    for m in modalities:
        everything[m] = np.lib.format.open_memmap(folder / f"{m}.all.npy", "w+", np.float32, (len(docs), encoder.dim))
        rows = [i for i, d in enumerate(docs) if getattr(d, m) is not None]
        log.info("encoding %d %s parts with %s", len(rows), m, encoder.name)
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            items = [getattr(docs[i], m) if m == "text" else str(getattr(docs[i], m)) for i in chunk]
            where, ids = [docs[i].where or docs[i].id for i in chunk], [docs[i].id for i in chunk]
            result = embed(
                encoder,
                items,
                m,
                cache=cache,
                report=report.problems.append,
                where=where,
                doc_ids=ids,
                progress=progress,
            )
            everything[m][chunk] = result.vectors
            ok[np.asarray(chunk)[~result.ok]] = False
            report.encoded += result.encoded
            report.from_cache += result.from_cache
            report.truncated += int(result.truncated.sum())
    report.skipped_ids = [d.id for d, good in zip(docs, ok) if not good]
    keep = np.flatnonzero(ok)
    raw: dict[str, np.ndarray] = {}
    for m in modalities:
        kept = np.lib.format.open_memmap(folder / f"{m}.npy", "w+", np.float32, (len(keep), encoder.dim))
        for start in range(0, len(keep), CHUNK):
            kept[start : start + CHUNK] = everything[m][keep[start : start + CHUNK]]
        kept.flush()
        raw[m] = kept
        del everything[m]
        (folder / f"{m}.all.npy").unlink()
    return [docs[i] for i in keep], raw

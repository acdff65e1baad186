"""Building an index: read a corpus, encode every part of every document (through the embedding
cache, so an interrupted build resumes), calibrate, fuse, and write the index folder.

The new index is written beside ``out`` (``out.building``) and swapped in only when complete, so
a failed or interrupted build never damages an existing index.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__
from ..calibration import Calibrator, save_calibration
from ..embedding import EmbeddingCache, embed, open_cache
from ..encoders import Encoder, load_encoder
from ..errors import InputError
from ..index import build_index_of_kind, index_kind
from ..ingest import read_corpus
from ..types import DOCUMENT_MODALITIES, MODALITIES, Document, Problem
from . import store
from .fuse import CHUNK, CalibrationSpec, fuse_documents, resolve_calibration
from .mixindex import MixIndex, calibration_record

log = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """What a build did: counts, and every problem with where it happened."""

    indexed: int = 0
    encoded: int = 0
    from_cache: int = 0
    truncated: int = 0
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
        if self.skipped_ids or self.problems:
            lines.append(f"{len(self.skipped_ids)} documents skipped; {len(self.problems)} problems:")
            lines += [f"  - {p}" for p in self.problems[:50]]
            if len(self.problems) > 50:
                lines.append(f"  ... and {len(self.problems) - 50} more (all are in manifest.json)")
        return "\n".join(lines + self.notes)


def build_index(
    corpus: str | Path | Sequence[Document],
    out: str | Path,
    encoder: Encoder | str,
    *,
    calibration: CalibrationSpec = None,
    alpha: float = 0.5,
    kind: str = "exact",
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
) -> tuple[MixIndex, BuildReport]:
    """Encode, calibrate, fuse and write an index folder; returns it opened, with a report.

    ``corpus``: a JSON Lines file, a folder of files, or ``Document`` objects.
    ``calibration``: a ``Calibrator``, a calibration file, ``"none"`` (plain CLIP), or None to
    fit document means on this corpus (the query mean then borrows the text mean).
    ``kind``: the vector index kind (see ``mixsearch.index.INDEX_KINDS``).
    Rerunning an interrupted build resumes from the embedding cache.
    """
    started = time.perf_counter()
    out = Path(out)
    _check_out(out, corpus)
    index_kind(kind)  # an unknown kind fails before any encoding
    Calibrator(alpha=alpha)  # so does an impossible alpha
    encoder = load_encoder(encoder) if isinstance(encoder, str) else encoder
    report = BuildReport()
    docs, corpus_name = _read(corpus, report)
    unsupported = [d for d in docs if set(d.parts) - encoder.modalities]
    for d in unsupported:
        missing = ", ".join(sorted(set(d.parts) - encoder.modalities))
        report.problems.append(
            Problem(d.where or d.id, f"model {encoder.name!r} cannot encode {missing}; skipped", d.id)
        )
    docs = [d for d in docs if not set(d.parts) - encoder.modalities]

    staging = out.with_name(out.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / store.RAW).mkdir(parents=True)
    cache = open_cache(encoder, cache_dir)
    try:
        docs, raw = _encode_documents(docs, encoder, cache, staging / store.RAW, report, progress)
    finally:
        cache.close()
    present = {m: np.array([getattr(d, m) is not None for d in docs], dtype=bool) for m in raw}
    calibrator, source = resolve_calibration(calibration, encoder.info(), raw, present, alpha, report.notes)
    # fused into a memory map, so a large corpus never needs its vectors in RAM at once
    fused = (
        np.lib.format.open_memmap(staging / "fused.npy", "w+", np.float32, (len(docs), encoder.dim))
        if docs
        else np.zeros((0, encoder.dim), np.float32)
    )
    vectors = fuse_documents(calibrator, alpha, raw, present, len(docs), encoder.dim, out=fused)
    index = build_index_of_kind(kind, vectors, [d.id for d in docs], {"modality": np.array([d.modality for d in docs])})
    store.write_documents(staging / store.DOCUMENTS, docs)
    report.indexed = len(docs)
    report.seconds = time.perf_counter() - started
    manifest = {
        "format": store.FORMAT,
        "mixsearch": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "corpus": corpus_name,
        "model": encoder.info(),
        "calibration": calibration_record(calibrator, source),
        "documents": {"total": len(docs), **{m: sum(d.modality == m for d in docs) for m in DOCUMENT_MODALITIES}},
        "build": {
            "encoded": report.encoded,
            "from_cache": report.from_cache,
            "truncated": report.truncated,
            "seconds": round(report.seconds, 2),
            "skipped_ids": report.skipped_ids,
            "problems": [str(p) for p in report.problems],
            "notes": report.notes,
        },
    }
    store.commit_generation(staging, manifest, lambda path: save_calibration(calibrator, path), index)
    del index, vectors, fused
    (staging / "fused.npy").unlink(missing_ok=True)
    _swap_in(staging, out)
    log.info("indexed %d documents into %s", len(docs), out)
    return MixIndex(out, encoder=encoder), report


def _read(corpus: str | Path | Sequence[Document], report: BuildReport) -> tuple[list[Document], str]:
    if isinstance(corpus, (str, Path)):
        return list(read_corpus(corpus, report.problems.append)), str(corpus)
    docs, seen = [], set()
    for d in corpus:
        if d.id in seen:
            report.problems.append(Problem(d.where or d.id, "duplicate id; later document skipped", d.id))
            continue
        seen.add(d.id)
        docs.append(d)
    return docs, "<documents>"


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
            where = [f"{docs[i].where or docs[i].id} (document {docs[i].id!r})" for i in chunk]
            result = embed(
                encoder, items, m, cache=cache, report=report.problems.append, where=where, progress=progress
            )
            everything[m][chunk] = result.vectors
            ok[np.asarray(chunk)[~result.ok]] = False
            report.encoded += int(result.ok.sum()) - result.from_cache
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


def _check_out(out: Path, corpus: object) -> None:
    """The index folder is replaced whole: never let that be anything but an index."""
    if isinstance(corpus, (str, Path)):
        source = Path(corpus).resolve()
        if source == out.resolve() or out.resolve() in source.parents:
            raise InputError(f"{out}: the index folder would replace the corpus {corpus}; choose another --out")
    if out.exists():
        if not out.is_dir():
            raise InputError(f"{out}: exists and is not a folder; choose another --out")
        if not store.is_index(out) and any(out.iterdir()):
            raise InputError(
                f"{out}: exists and is not a mixsearch index; refusing to replace it (choose another --out)"
            )


def _swap_in(staging: Path, out: Path) -> None:
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)

"""Reading a corpus and encoding its documents: the steps a build and an add share.

``read`` keeps the documents the index's model can encode (everything else is a problem in the
report, counted as skipped); ``encode`` writes every part of every document into a segment's
raw-embedding files, through the embedding cache, so an interrupted build or add resumes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..embedding import EmbeddingCache, embed
from ..encoders import Encoder
from ..errors import InputError
from ..ingest import check_id, read_corpus
from ..types import MODALITIES, Document, Problem
from .fuse import CHUNK
from .reports import Report

log = logging.getLogger(__name__)


def read(corpus: str | Path | Sequence[Document], report: Report, encoder: Encoder) -> tuple[list[Document], str]:
    """The corpus's documents that ``encoder`` can encode, and the corpus's name; everything else
    is reported and counted as skipped (``report.skipped`` is set to what reading dropped)."""
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
    lacking = [m for m in MODALITIES if m not in encoder.modalities]
    if not lacking:  # the model encodes every part a document can have: nothing to look at per document
        return docs, name
    kept = []
    for d in docs:
        missing = set(d.parts) - encoder.modalities if any(getattr(d, m) is not None for m in lacking) else None
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


def joint(encoder: Encoder) -> bool:
    """Whether ``encoder`` embeds an image+text document as one vector (a VLM), beside its parts."""
    return "multimodal" in getattr(encoder, "joint_modalities", ())


def part(doc: Document, m: str) -> object:
    """A document's item of part ``m``: its text, a media path as a string, or for ``multimodal``
    (a joint encoder's) its (text, image path) pair; None when it lacks it."""
    if m == "multimodal":
        return (doc.text, str(doc.image)) if doc.text is not None and doc.image is not None else None
    value = getattr(doc, m)
    return value if value is None or m == "text" else str(value)


def table_presence(table, encoder: Encoder) -> dict[str, np.ndarray]:
    """Which rows of a document table (``store.document_table``) have each part, for the parts
    some row has (``multimodal``: text and image, for a joint encoder), from the columns' nulls."""
    import pyarrow.compute as pc

    have = {
        m: pc.is_valid(table[m]).to_numpy(zero_copy_only=False) for m in MODALITIES if table[m].null_count < len(table)
    }
    if joint(encoder) and "text" in have and "image" in have:
        both = have["text"] & have["image"]
        if both.any():
            have["multimodal"] = both
    return have


def table_roles(table, encoder: Encoder) -> set[str]:
    """The calibration roles a document table's documents need (``multimodal`` too for a joint encoder)."""
    return set(table_presence(table, encoder))


def table_modalities(table) -> set[str]:
    """The document modalities (``Document.modality``) a document table holds."""
    import pyarrow.compute as pc

    return set(pc.unique(table["modality"]).to_pylist())


def encode(
    docs: list[Document],
    table,
    encoder: Encoder,
    cache: EmbeddingCache,
    folder: Path,
    report: Report,
    progress: bool | None,
) -> tuple[list[Document], Any, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Encode every part of every document into ``folder/<modality>.npy`` (memory-mapped, zero
    rows where a document lacks the part); keep only the documents whose every part encoded
    (the others' ids go to ``report.skipped_ids``; ``report.skipped`` is left to the caller).
    ``table``: the documents' table (``store.document_table``). Returns the documents kept, their
    table, their raw embeddings and which of them have each part.
    A joint encoder's image+text documents are also encoded whole, into ``multimodal.npy``: the
    vector their search uses; their parts stay for the audit and as probes."""
    present = table_presence(table, encoder)
    ok = np.ones(len(docs), dtype=bool)
    everything: dict[str, np.memmap] = {}
    for m, has in present.items():
        everything[m] = np.lib.format.open_memmap(folder / f"{m}.npy", "w+", np.float32, (len(docs), encoder.dim))
        rows = np.flatnonzero(has)
        log.info("encoding %d %s parts with %s", len(rows), m, encoder.name)
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            items = [part(docs[i], m) for i in chunk]
            where, ids = [docs[i].where or docs[i].id for i in chunk], [docs[i].id for i in chunk]
            result = embed(
                encoder,
                items,  # type: ignore[arg-type]
                m,
                cache=cache,
                report=report.problems.append,
                where=where,
                doc_ids=ids,
                progress=progress,
            )
            if chunk[-1] - chunk[0] + 1 == len(chunk):  # every document has the part here: one slice, no gather
                everything[m][chunk[0] : chunk[-1] + 1] = result.vectors
            else:
                everything[m][chunk] = result.vectors
            ok[chunk[~result.ok]] = False
            report.encoded += result.encoded
            report.from_cache += result.from_cache
            report.truncated += int(result.truncated.sum())
    report.skipped_ids = [docs[i].id for i in np.flatnonzero(~ok)]
    if ok.all():  # the common case: the files as written are the segment's
        written: dict[str, np.ndarray] = {}
        for m, matrix in everything.items():
            matrix.flush()
            written[m] = matrix
        return docs, table, written, present
    keep = np.flatnonzero(ok)
    raw: dict[str, np.ndarray] = {}
    for m in list(everything):
        os.replace(folder / f"{m}.npy", folder / f"{m}.all.npy")
        kept = np.lib.format.open_memmap(folder / f"{m}.npy", "w+", np.float32, (len(keep), encoder.dim))
        for start in range(0, len(keep), CHUNK):
            kept[start : start + CHUNK] = everything[m][keep[start : start + CHUNK]]
        kept.flush()
        raw[m] = kept
        del everything[m]
        (folder / f"{m}.all.npy").unlink()
    return [docs[i] for i in keep], table.take(keep), raw, {m: has[keep] for m, has in present.items()}

"""The batched embedding pipeline: items -> raw embeddings, through the on-disk cache, one
batch at a time, with a bad item reported and skipped instead of failing the run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import cache_root
from ..encoders.base import Encoder
from ..errors import InputError
from ..ingest.media import shown
from ..progress import progress_bar
from ..types import Problem
from .cache import NOT_FINITE, EmbeddingCache, content_key


@dataclass
class Embedded:
    """Embeddings of a list of items: ``vectors[i]`` is valid where ``ok[i]``.

    ``from_cache`` counts rows filled from the cache; ``encoded`` counts the distinct items the
    model encoded in this call (copies of one item are encoded once and fill every row).
    """

    vectors: np.ndarray
    ok: np.ndarray
    truncated: np.ndarray
    from_cache: int
    encoded: int = 0


def open_cache(encoder: Encoder, cache_dir: str | Path | None = None) -> EmbeddingCache:
    """The embedding cache of ``encoder``'s model under ``cache_dir`` (default: ``cache_root()``).

    An encoder that keeps files of its own (a transformers model's ONNX export) and was loaded
    without a ``cache_dir`` keeps them under this one from now on."""
    if cache_dir is not None and getattr(encoder, "cache_dir", False) is None:
        encoder.cache_dir = Path(cache_dir)  # type: ignore[attr-defined]
    return EmbeddingCache(cache_dir or cache_root(), encoder.fingerprint, encoder.dim)


def embed(
    encoder: Encoder,
    items: Sequence[str | Path],
    modality: str,
    *,
    cache: EmbeddingCache | None = None,
    report: Callable[[Problem], None] | None = None,
    where: Sequence[str] | None = None,
    doc_ids: Sequence[str] | None = None,
    progress: bool | None = None,
    query: bool = False,
) -> Embedded:
    """Encode items (texts, or media paths) through the cache; a bad item is reported, not fatal.

    Items with the same content (the same text, or files with the same bytes) are encoded once
    and fill every row they appear in; a bad one is reported for each row.
    Texts are encoded shortest first, so each batch pads to a similar length (measured 1.54x
    faster on captions than corpus order, same embeddings). Each batch is written to the cache as
    soon as it is encoded, so an interrupted run loses at most one batch and the next run starts
    where this one stopped. ``where`` and ``doc_ids`` say, per item, what a problem names.
    """
    encoder.check_modality(modality)
    n = len(items)
    vectors = np.zeros((n, encoder.dim), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    truncated = np.zeros(n, dtype=bool)
    query = query and encoder.query_prompts
    tag = f"{encoder.cache_tag(modality)}@query" if query else encoder.cache_tag(modality)

    def fail(i: int, message: str) -> None:
        if report:
            report(Problem(where[i] if where else shown(items[i]), message, doc_ids[i] if doc_ids else None))

    # content keys; a path named twice is hashed once (a failure is remembered as its message)
    keys: list[str | None] = []
    known: dict[str | Path, str | InputError] = {}
    for i, item in enumerate(items):
        if item not in known:
            try:
                known[item] = content_key(tag, item)
            except InputError as err:
                known[item] = err
        found = known[item]
        if isinstance(found, InputError):
            keys.append(None)
            fail(i, str(found))
        else:
            keys.append(found)
    rows_of: dict[str, list[int]] = {}  # key -> every row with that content; the first one is encoded
    for i, key in enumerate(keys):
        if key is not None:
            rows_of.setdefault(key, []).append(i)
    hits = cache.get_many(list(rows_of)) if cache is not None else {}
    todo, from_cache = [], 0
    for key, rows in rows_of.items():
        if key in hits:
            from_cache += len(rows)
            vectors[rows], truncated[rows] = hits[key]
            ok[rows] = True
        else:
            todo.append(key)

    if modality == "text":
        todo.sort(key=lambda key: len(str(items[rows_of[key][0]])))
    encoder.expect(len(todo), modality)  # a long run may switch to a faster runtime
    encoded = 0
    with progress_bar(len(todo), f"encoding {modality}", progress) as bar:
        for start in range(0, len(todo), encoder.batch_size):
            batch_keys = todo[start : start + encoder.batch_size]
            batch, loaded = [], []
            for key in batch_keys:
                first = rows_of[key][0]
                try:
                    batch.append(items[first] if modality == "text" else encoder.load(modality, items[first]))
                    loaded.append(key)
                except InputError as err:
                    for i in rows_of[key]:
                        fail(i, str(err))
            if batch:
                out, flags = encoder.encode_with_flags(
                    batch, modality, batch_size=len(batch), progress=False, query=query
                )
                finite = np.isfinite(out).all(axis=1)  # a NaN would vanish from every ranking: refuse it
                for key, vector, flag, good in zip(loaded, out, flags, finite):
                    rows = rows_of[key]
                    if good:
                        vectors[rows], truncated[rows], ok[rows] = vector, flag, True
                    else:
                        for i in rows:
                            fail(i, NOT_FINITE)
                encoded += len(batch)
                if cache is not None and finite.any():
                    cache.put_many(
                        [k for k, good in zip(loaded, finite) if good], out[finite], np.asarray(flags)[finite]
                    )
            bar.update(len(batch_keys))
    return Embedded(vectors, ok, truncated, from_cache=from_cache, encoded=encoded)

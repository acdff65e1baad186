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
from ..progress import progress_bar
from ..types import Problem
from .cache import EmbeddingCache, content_key


@dataclass
class Embedded:
    """Embeddings of a list of items: ``vectors[i]`` is valid where ``ok[i]``."""

    vectors: np.ndarray
    ok: np.ndarray
    truncated: np.ndarray
    from_cache: int


def open_cache(encoder: Encoder, cache_dir: str | Path | None = None) -> EmbeddingCache:
    """The embedding cache of ``encoder``'s model under ``cache_dir`` (default: ``cache_root()``)."""
    return EmbeddingCache(cache_dir or cache_root(), encoder.fingerprint, encoder.dim)


def embed(
    encoder: Encoder,
    items: Sequence[str | Path],
    modality: str,
    *,
    cache: EmbeddingCache | None = None,
    report: Callable[[Problem], None] | None = None,
    where: Sequence[str] | None = None,
    progress: bool | None = None,
) -> Embedded:
    """Encode items (texts, or media paths) through the cache; a bad item is reported, not fatal.

    Each batch is written to the cache as soon as it is encoded, so an interrupted run loses
    at most one batch and the next run starts where this one stopped.
    """
    encoder.check_modality(modality)
    n = len(items)
    vectors = np.zeros((n, encoder.dim), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    truncated = np.zeros(n, dtype=bool)

    def fail(i: int, message: str) -> None:
        if report:
            report(Problem(where[i] if where else str(items[i]), message))

    keys: list[str | None] = []
    for i, item in enumerate(items):
        try:
            keys.append(content_key(encoder.cache_tag(modality), item))
        except InputError as err:
            keys.append(None)
            fail(i, str(err))
    hits = cache.get_many([k for k in keys if k]) if cache is not None else {}
    todo, from_cache = [], 0
    for i, key in enumerate(keys):
        if key in hits:
            from_cache += 1
            vectors[i], truncated[i] = hits[key]
            ok[i] = True
        elif key:
            todo.append(i)

    with progress_bar(len(todo), f"encoding {modality}", progress) as bar:
        for start in range(0, len(todo), encoder.batch_size):
            batch_rows = todo[start : start + encoder.batch_size]
            batch, rows = [], []
            for i in batch_rows:
                try:
                    batch.append(items[i] if modality == "text" else encoder.load(modality, items[i]))
                    rows.append(i)
                except InputError as err:
                    fail(i, str(err))
            if batch:
                out, flags = encoder.encode_with_flags(batch, modality, batch_size=len(batch), progress=False)
                vectors[rows], truncated[rows], ok[rows] = out, flags, True
                if cache is not None:
                    cache.put_many([keys[i] or "" for i in rows], out, flags)
            bar.update(len(batch_rows))
    return Embedded(vectors, ok, truncated, from_cache=from_cache)

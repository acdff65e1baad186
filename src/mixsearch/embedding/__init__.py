"""Embedding: the batched pipeline from items to raw embeddings (``pipeline``), through a
content-keyed, checksummed, size-limited on-disk cache (``cache``: ``cache_info``, ``prune``,
``clear`` are what ``mixsearch cache`` runs)."""

from .cache import (
    CacheInfo,
    EmbeddingCache,
    PruneReport,
    cache_info,
    clear,
    content_key,
    max_cache_bytes,
    parse_size,
    prune,
)
from .pipeline import Embedded, embed, open_cache

__all__ = [
    "CacheInfo",
    "Embedded",
    "EmbeddingCache",
    "PruneReport",
    "cache_info",
    "clear",
    "content_key",
    "embed",
    "max_cache_bytes",
    "open_cache",
    "parse_size",
    "prune",
]

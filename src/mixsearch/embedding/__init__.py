"""Embedding: the batched pipeline from items to raw embeddings (``pipeline``), through a
content-keyed on-disk cache (``cache``)."""

from .cache import EmbeddingCache, content_key
from .pipeline import Embedded, embed, open_cache

__all__ = ["Embedded", "EmbeddingCache", "content_key", "embed", "open_cache"]

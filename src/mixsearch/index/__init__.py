"""Vector indexes: the protocol and registry (``base``) and the kinds (``exact``, ``hnsw``)."""

from .base import (
    INDEX_KINDS,
    Filter,
    Neighbours,
    VectorIndex,
    build_index_of_kind,
    index_kind,
    load_index,
    register_index,
)
from .exact import ExactIndex
from .hnsw import HnswIndex

__all__ = [
    "INDEX_KINDS",
    "ExactIndex",
    "Filter",
    "HnswIndex",
    "Neighbours",
    "VectorIndex",
    "build_index_of_kind",
    "index_kind",
    "load_index",
    "register_index",
]

"""Vector indexes: the protocol and registry (``base``) and the kinds (``exact``)."""

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

__all__ = [
    "INDEX_KINDS",
    "ExactIndex",
    "Filter",
    "Neighbours",
    "VectorIndex",
    "build_index_of_kind",
    "index_kind",
    "load_index",
    "register_index",
]

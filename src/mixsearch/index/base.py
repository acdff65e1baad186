"""The index protocol: what the engine asks of any vector index, exact, approximate or remote.

An index holds vectors, their document ids, and the document fields a filter may name
(``modality`` today; metadata columns later). It knows nothing of models, calibration or files
other than its own. Kinds register in ``INDEX_KINDS``; the engine picks one by the name an index
folder's manifest records and never names a class itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from ..errors import UsageError, VectorIndexError
from ..types import DOCUMENT_MODALITIES

#: Per-row document fields an index keeps for filtering: ``{name: array of n values}``.
Fields = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Filter:
    """Which documents a search may return, by their fields.

    ``modality``: the document modalities allowed (``text``, ``image``, ``audio``, ``video``,
    ``multimodal``), or None for all. ``where``: an SQL ``WHERE`` condition over the documents'
    metadata fields (``"year >= 2020 AND source = 'wiki'"``), or None. Both must hold.
    """

    modality: frozenset[str] | None = None
    where: str | None = None

    @classmethod
    def of(cls, modality: str | Iterable[str] | None = None) -> Filter | None:
        """A filter from user-facing arguments (None when nothing is filtered); names are checked."""
        if modality is None:
            return None
        wanted = frozenset([modality] if isinstance(modality, str) else modality)
        unknown = sorted(wanted - set(DOCUMENT_MODALITIES))
        if unknown or not wanted:
            raise UsageError(
                f"unknown modality {', '.join(unknown) or '(none given)'}; expected one of "
                f"{', '.join(DOCUMENT_MODALITIES)}"
            )
        return cls(modality=wanted)

    def mask(self, fields: Fields, n: int) -> np.ndarray | None:
        """A boolean mask over ``n`` rows (None: every row passes)."""
        if self.modality is None:
            return None
        if "modality" not in fields:
            raise VectorIndexError("this index keeps no 'modality' field to filter on")
        return np.isin(np.asarray(fields["modality"]), sorted(self.modality))


@dataclass
class Neighbours:
    """Search results of a batch of queries, best first.

    ``scores`` is ``(n_queries, k)`` with ``-inf`` past the hits a query has; ``ids[i]`` lists the
    document ids of query ``i``'s hits (as many as its finite scores).
    """

    scores: np.ndarray
    ids: list[list[str]]


@runtime_checkable
class VectorIndex(Protocol):
    """What the engine needs of an index kind."""

    kind: ClassVar[str]
    dim: int

    def __len__(self) -> int: ...

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: Sequence[str],
        fields: Fields | None = None,
        *,
        options: Mapping[str, object] | None = None,
    ) -> VectorIndex:
        """A new index over ``vectors`` (one row per id), keeping ``fields`` for filters.
        ``options``: the kind's own settings (recorded in the manifest; unknown names refused)."""
        ...

    @property
    def options(self) -> dict[str, object]:
        """The settings this index was built with (what ``build`` needs to build another like it)."""
        ...

    def add(self, vectors: np.ndarray, ids: Sequence[str], fields: Fields | None = None) -> None:
        """Add documents; an id already present is replaced."""
        ...

    def delete(self, ids: Iterable[str]) -> int:
        """Remove documents by id; returns how many were there."""
        ...

    def search(self, queries: np.ndarray, k: int, filter: Filter | None = None) -> Neighbours:
        """The ``k`` best documents (by inner product) for each query row, allowed by ``filter``."""
        ...

    def save(self, folder: Path) -> None:
        """Write the index into ``folder`` (which it owns)."""
        ...

    @classmethod
    def load(cls, folder: Path) -> VectorIndex:
        """Open an index ``save`` wrote."""
        ...


#: Index kinds by name, as manifests record them.
INDEX_KINDS: dict[str, type[VectorIndex]] = {}


def register_index(cls: type[VectorIndex]) -> type[VectorIndex]:
    """Class decorator: make an index kind known by its ``kind`` name."""
    INDEX_KINDS[cls.kind] = cls
    return cls


def index_kind(kind: str) -> type[VectorIndex]:
    """The class of an index kind, with an error naming the known ones."""
    from . import (
        exact,  # noqa: F401 - registers the built-in kind
        hnsw,  # noqa: F401 - registers the hnsw kind (faiss is imported only when used)
    )

    if kind not in INDEX_KINDS:
        raise VectorIndexError(f"unknown index kind {kind!r} (known: {', '.join(INDEX_KINDS)})")
    return INDEX_KINDS[kind]


def load_index(folder: Path, kind: str) -> VectorIndex:
    """Open the index of kind ``kind`` saved in ``folder``."""
    return index_kind(kind).load(folder)


def build_index_of_kind(
    kind: str,
    vectors: np.ndarray,
    ids: Sequence[str],
    fields: Fields | None = None,
    *,
    options: Mapping[str, object] | None = None,
) -> VectorIndex:
    """Build a new index of kind ``kind`` with its ``options``."""
    return index_kind(kind).build(vectors, ids, fields, options=options)

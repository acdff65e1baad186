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
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from ..errors import UsageError, VectorIndexError
from ..registry import Registry
from ..types import DOCUMENT_MODALITIES, modality_name

#: Per-row document fields an index keeps for filtering: ``{name: array of n values}`` (numpy or
#: Arrow arrays; ``where.FieldTable`` holds them as one Arrow table).
Fields = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Filter:
    """Which documents a search may return, by their fields.

    ``modality``: the document modalities allowed (``text``, ``image``, ``audio``, ``video``,
    ``multimodal``; ``Filter.of`` also takes ``image+text`` and the other ``MODALITY_ALIASES``), or
    None for all. ``where``: an SQL ``WHERE`` condition over the documents'
    metadata fields (``"year >= 2020 AND source = 'wiki'"``), or None. Both must hold.
    """

    modality: frozenset[str] | None = None
    where: str | None = None

    @classmethod
    def of(cls, modality: str | Iterable[str] | None = None, where: str | None = None) -> Filter | None:
        """A filter from user-facing arguments (None when nothing is filtered); names are checked
        (the ``where`` condition is checked against an index's fields by ``check``)."""
        if modality is None and where is None:
            return None
        wanted = None
        if modality is not None:
            given = [modality] if isinstance(modality, str) else list(modality)
            # the one place modality names are read: aliases (image+text, IT, ...) become multimodal
            wanted = frozenset(modality_name(m) if isinstance(m, str) else m for m in given)
            unknown = sorted(wanted - set(DOCUMENT_MODALITIES))
            if unknown or not wanted:
                raise UsageError(
                    f"unknown modality {', '.join(unknown) or '(none given)'}; expected one of "
                    f"{', '.join(DOCUMENT_MODALITIES)} (or image+text for multimodal)"
                )
        if where is not None and (not isinstance(where, str) or not where.strip()):
            raise UsageError(f"where must be a non-empty SQL condition, got {where!r}")
        return cls(modality=wanted, where=where)

    def check(self, schema) -> str | None:
        """Check ``where`` against the fields' Arrow ``schema`` (unknown field, wrong type, not one
        boolean condition: a ``UsageError`` listing the known fields); returns the SQL to run."""
        from .where import check_where

        return None if self.where is None else check_where(self.where, schema)

    def mask(self, fields: Fields, n: int) -> np.ndarray | None:
        """A boolean mask over ``n`` rows (None: every row passes)."""
        keep = None
        if self.modality is not None:
            if "modality" not in fields:
                raise VectorIndexError("this index keeps no 'modality' field to filter on")
            keep = np.isin(np.asarray(fields["modality"]), sorted(self.modality))
        if self.where is not None:
            from .where import arrow_table, where_mask

            table = arrow_table(fields, n)
            chosen = where_mask(self.check(table.schema), table, self.where)  # type: ignore[arg-type]
            keep = chosen if keep is None else keep & chosen
        return keep


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


#: Index kinds by name, as manifests record them. The built-in kinds are ``"module:class"`` paths
#: imported on first use (faiss and pymilvus load only for the kind that needs them);
#: ``register_index`` adds others.
INDEX_KINDS: Registry[type[VectorIndex]] = Registry(
    {
        "exact": "mixsearch.index.exact:ExactIndex",
        "hnsw": "mixsearch.index.hnsw:HnswIndex",
        "milvus": "mixsearch.index.milvus:MilvusIndex",
    }
)


def register_index(cls: type[VectorIndex]) -> type[VectorIndex]:
    """Class decorator: make an index kind known by its ``kind`` name."""
    INDEX_KINDS[cls.kind] = cls
    return cls


def index_kind(kind: str) -> type[VectorIndex]:
    """The class of an index kind, with an error naming the known ones."""
    if kind not in INDEX_KINDS:
        raise VectorIndexError(f"unknown index kind {kind!r} (known: {', '.join(INDEX_KINDS)})")
    return INDEX_KINDS[kind]


def load_index(folder: Path, kind: str) -> VectorIndex:
    """Open the index of kind ``kind`` saved in ``folder``."""
    return index_kind(kind).load(folder)


# -- optional hooks of a kind (an index kind may define them; exact needs neither) -----------------
#
# ``check_options(options)`` (classmethod): check the options and reach what they name (a server)
# before a build does any work. ``discard(folder)`` (classmethod): free what a saved index holds
# outside its folder (a server's collection) before the engine removes that folder.


def check_index_options(kind: str, options: Mapping[str, object] | None) -> None:
    """Fail early, before any encoding, for an unknown kind or options its ``check_options`` refuses."""
    check = getattr(index_kind(kind), "check_options", None)
    if check is not None:
        check(options)


def discard_index(folder: Path) -> None:
    """Let every kind with a ``discard`` hook free what the index saved in ``folder`` holds elsewhere."""
    for cls in list(INDEX_KINDS.values()):
        discard = getattr(cls, "discard", None)
        if discard is not None:
            discard(folder)


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


def positions_of(ids: Any, wanted: Iterable[str]) -> np.ndarray:
    """The positions in ``ids`` (a list of strings or an Arrow string array) of every id in
    ``wanted``, ascending: one vectorised set lookup (a Python dict over a million ids costs
    ~20x more, and an add or delete needs this once per change)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(list(ids), pa.string())
    mask = pc.is_in(column, value_set=pa.array(list(wanted), pa.string()))
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False))

"""Exact search: inner product (cosine, as vectors are normalised) against every stored vector.

Scores are computed in chunks, so memory stays bounded however many documents there are, with
a running top-k. Vectors may be memory-mapped from disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import UsageError, VectorIndexError
from .base import Fields, Filter, Neighbours, register_index

#: Bytes one chunk of a search may allocate — its scores (queries x rows) and, for vectors that are
#: not float32 already, its float32 copy of the rows — so memory stays bounded whatever the corpus size.
SCORE_BUDGET = 64 << 20


def chunk_rows(n_queries: int, dim: int, copies_rows: bool = False) -> int:
    """Rows per chunk for ``n_queries`` queries within ``SCORE_BUDGET`` (``copies_rows``: each
    row of dimension ``dim`` is also copied to float32)."""
    return max(256, SCORE_BUDGET // (4 * (n_queries + (dim if copies_rows else 0))))


def _as_tensor(block: np.ndarray):
    """A float32 torch view of a block of rows (no copy when they are float32; memory maps are
    read-only, which torch only warns about: nothing here writes to them)."""
    import warnings

    import torch

    block = np.ascontiguousarray(block, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(block)


@register_index
class ExactIndex:
    """Exact inner-product search over an ``(n, d)`` float32 matrix (in memory or memory-mapped).

    Files (``save``): ``vectors.npy``, ``ids.json``, ``fields.parquet`` (the filterable fields).
    """

    kind: ClassVar[str] = "exact"

    def __init__(self, vectors: np.ndarray, ids: Sequence[str], fields: Fields | None = None, where: str = "index"):
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise VectorIndexError(f"{where}: {len(ids)} ids for vectors of shape {vectors.shape}")
        self.vectors = vectors
        self.ids = list(ids)
        self.fields = {name: np.asarray(values) for name, values in (fields or {}).items()}
        for name, values in self.fields.items():
            if len(values) != len(self.ids):
                raise VectorIndexError(f"{where}: field {name!r} has {len(values)} values for {len(self.ids)} ids")
        self.dim = int(vectors.shape[1])
        self.where = where

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: Sequence[str],
        fields: Fields | None = None,
        *,
        options: Mapping[str, object] | None = None,
    ) -> ExactIndex:
        """An index over ``vectors`` (one row per id). Exact search takes no options."""
        if options:
            raise UsageError(f"the exact index takes no options (got {', '.join(sorted(options))})")
        return cls(np.asarray(vectors, dtype=np.float32), ids, fields)

    @property
    def options(self) -> dict[str, object]:
        """None: exact search has no settings."""
        return {}

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, vectors: np.ndarray, ids: Sequence[str], fields: Fields | None = None) -> None:
        """Append documents; ids already present are replaced (their old rows are dropped)."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if vectors.shape[1] != self.dim or len(vectors) != len(ids):
            raise VectorIndexError(f"{self.where}: cannot add {len(ids)} ids with vectors of shape {vectors.shape}")
        if set(fields or {}) != set(self.fields):
            raise VectorIndexError(f"{self.where}: added documents need the fields {sorted(self.fields)}")
        self.delete(ids)
        self.vectors = np.concatenate([np.asarray(self.vectors), vectors])
        self.ids += list(ids)
        self.fields = {
            name: np.concatenate([values, np.asarray(fields[name])])  # type: ignore[index]
            for name, values in self.fields.items()
        }

    def delete(self, ids: Iterable[str]) -> int:
        """Remove documents by id; returns how many were present."""
        gone = set(ids)
        keep = np.array([i not in gone for i in self.ids], dtype=bool)
        removed = int((~keep).sum())
        if removed:
            self.vectors = np.asarray(self.vectors)[keep]
            self.ids = [i for i, k in zip(self.ids, keep) if k]
            self.fields = {name: values[keep] for name, values in self.fields.items()}
        return removed

    def search(self, queries: np.ndarray, k: int = 10, filter: Filter | None = None) -> Neighbours:
        """Top-``k`` documents per query, best first (see ``search_rows``)."""
        scores, rows = self.search_rows(queries, k, None if filter is None else filter.mask(self.fields, len(self)))
        ids = [[self.ids[r] for r in row if r >= 0] for row in rows]
        return Neighbours(scores, ids)

    def search_rows(self, queries: np.ndarray, k: int = 10, allowed: np.ndarray | None = None):
        """Top-``k`` rows per query: ``(scores, rows)``, both ``(n_queries, k)``, best first.

        ``allowed`` is an optional boolean mask over rows; rows not allowed are never returned.
        Where fewer than ``k`` rows qualify, the tail holds row ``-1`` and score ``-inf``.
        Results are repeatable for the same inputs; rows tied exactly at the k-th score may be
        cut in any order (among returned rows, ties are listed by row order).
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise VectorIndexError(
                f"query dimension {queries.shape[1]} does not match the {self.where}'s {self.dim}: "
                "was it built with another model?"
            )
        n, q = len(self), len(queries)
        k = max(0, min(k, n))
        if k == 0 or q == 0:
            return np.full((q, k), -np.inf, dtype=np.float32), np.full((q, k), -1, dtype=np.int64)
        import torch  # its top-k is ~2x numpy's argpartition here, and needs no negated copy

        rows = chunk_rows(q, self.dim, copies_rows=self.vectors.dtype != np.float32)
        query_t = torch.from_numpy(np.ascontiguousarray(queries))
        found_scores, found_rows = [], []
        for start in range(0, n, rows):
            block = _as_tensor(self.vectors[start : start + rows])
            scores = query_t @ block.T
            if allowed is not None:
                scores.masked_fill_(torch.from_numpy(~allowed[start : start + len(block)]), -np.inf)
            top_scores, top_rows = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            found_scores.append(top_scores.numpy())
            found_rows.append(top_rows.numpy() + start)
        cand_scores, cand_rows = np.concatenate(found_scores, axis=1), np.concatenate(found_rows, axis=1)
        # best first; among equal scores, lower rows first (the same answer however the rows were chunked)
        order = np.lexsort((cand_rows, -cand_scores), axis=1)[:, :k]
        best_scores = np.take_along_axis(cand_scores, order, axis=1)
        best_rows = np.take_along_axis(cand_rows, order, axis=1)
        best_rows[~np.isfinite(best_scores)] = -1
        return best_scores, best_rows

    def save(self, folder: Path) -> None:
        """Write ``vectors.npy``, ``ids.json`` and ``fields.parquet`` into ``folder``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        mapped = getattr(self.vectors, "filename", None)  # a memory map of the target file needs no copy
        if not (mapped and Path(mapped) == (folder / "vectors.npy").resolve()):
            np.save(folder / "vectors.npy", np.asarray(self.vectors, dtype=np.float32))
        (folder / "ids.json").write_text(json.dumps(self.ids))
        table = (
            pa.table({name: pa.array(values.tolist()) for name, values in self.fields.items()})
            if self.fields
            else pa.table({"_rows": pa.array(np.zeros(len(self), dtype=np.int8))})
        )
        pq.write_table(table, folder / "fields.parquet")

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> ExactIndex:
        """Open a saved index; vectors are memory-mapped unless ``mmap=False``."""
        import pyarrow.parquet as pq

        folder = Path(folder)
        try:
            vectors = np.load(folder / "vectors.npy", mmap_mode="r" if mmap else None)
            ids = json.loads((folder / "ids.json").read_text())
            table = pq.read_table(folder / "fields.parquet")
        except (OSError, ValueError) as err:
            raise VectorIndexError(f"{folder}: unreadable index ({err})") from None
        fields = {name: np.asarray(table[name].to_pylist()) for name in table.column_names if name != "_rows"}
        return cls(vectors, ids, fields, where=f"index at {folder}")

"""Exact search: inner product (cosine, as vectors are normalised) against every stored vector.

Scores are computed in chunks, so memory stays bounded however many documents there are, with
a running top-k. Vectors may be memory-mapped from disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import VectorIndexError
from .base import Fields, Filter, Neighbours, register_index

#: Bytes of scores one chunk may hold: memory stays bounded whatever the corpus size.
SCORE_BUDGET = 64 << 20


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
    def build(cls, vectors: np.ndarray, ids: Sequence[str], fields: Fields | None = None) -> ExactIndex:
        """An index over ``vectors`` (one row per id)."""
        return cls(np.asarray(vectors, dtype=np.float32), ids, fields)

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
        best_scores = np.full((q, k), -np.inf, dtype=np.float32)
        best_rows = np.full((q, k), -1, dtype=np.int64)
        if k == 0 or q == 0:
            return best_scores, best_rows
        chunk = max(1024, SCORE_BUDGET // (4 * q))
        for start in range(0, n, chunk):
            block = np.asarray(self.vectors[start : start + chunk], dtype=np.float32)
            scores = queries @ block.T
            if allowed is not None:
                scores[:, ~allowed[start : start + len(block)]] = -np.inf
            take = min(k, scores.shape[1])
            top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
            cand_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
            cand_rows = np.concatenate([best_rows, top + start], axis=1)
            # rows of -1 (empty slots) sort last among equal -inf scores
            order = np.lexsort((np.where(cand_rows < 0, np.iinfo(np.int64).max, cand_rows), -cand_scores), axis=1)[
                :, :k
            ]
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

"""Index: rank stored vectors against query vectors. Knows vectors and ids, never models.

``ExactIndex`` scores by inner product (cosine, as vectors are normalised) in chunks, so memory
stays bounded however many documents there are, and keeps a running top-k. Other index kinds
(approximate ones, say) register in ``INDEX_KINDS`` with the same ``search``/``save``/``load``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

#: Bytes of scores one chunk may hold: memory stays bounded whatever the corpus size.
SCORE_BUDGET = 64 << 20


class VectorIndexError(ValueError):
    """A query or vectors that do not fit the index (dimension, shape)."""


class VectorIndex(Protocol):
    kind: str
    ids: Sequence[str]
    dim: int

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        ...

    def save(self, folder: Path) -> None:
        ...


class ExactIndex:
    """Exact inner-product search over an ``(n, d)`` float32 matrix (in memory or memory-mapped)."""

    kind = "exact"

    def __init__(self, vectors: np.ndarray, ids: Sequence[str], where: str = "index"):
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise VectorIndexError(f"{where}: {len(ids)} ids for vectors of shape {vectors.shape}")
        self.vectors = vectors
        self.ids = list(ids)
        self.dim = int(vectors.shape[1])
        self.where = where

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, queries: np.ndarray, k: int = 10, allowed: np.ndarray | None = None):
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
            order = np.lexsort((np.where(cand_rows < 0, np.iinfo(np.int64).max, cand_rows), -cand_scores), axis=1)[:, :k]
            best_scores = np.take_along_axis(cand_scores, order, axis=1)
            best_rows = np.take_along_axis(cand_rows, order, axis=1)
        best_rows[~np.isfinite(best_scores)] = -1
        return best_scores, best_rows

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if not (isinstance(self.vectors, np.memmap) and Path(self.vectors.filename) == (folder / "vectors.npy").resolve()):
            np.save(folder / "vectors.npy", np.asarray(self.vectors, dtype=np.float32))
        (folder / "ids.json").write_text(json.dumps(self.ids))

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> "ExactIndex":
        folder = Path(folder)
        try:
            vectors = np.load(folder / "vectors.npy", mmap_mode="r" if mmap else None)
            ids = json.loads((folder / "ids.json").read_text())
        except (OSError, ValueError) as err:
            raise VectorIndexError(f"{folder}: unreadable index ({err})") from None
        return cls(vectors, ids, where=f"index at {folder}")


INDEX_KINDS: dict[str, type] = {"exact": ExactIndex}


def load_index(folder: Path, kind: str = "exact") -> VectorIndex:
    if kind not in INDEX_KINDS:
        raise VectorIndexError(f"{folder}: unknown index kind {kind!r} (known: {', '.join(INDEX_KINDS)})")
    return INDEX_KINDS[kind].load(folder)

"""The audit's numbers, as plain array functions (numpy only, no model, file or index code), so each
can be checked against values worked out by hand on a few made-up vectors.

Rows are L2-normalised before anything is measured, so a dot product is a cosine. The mean cosines
are exact over all pairs (closed forms of sums, no pair sampling): over the ``n (n - 1)`` ordered
pairs of distinct rows for "within", over all ``len(a) * len(b)`` pairs for "across", and over the
``n (n - 1)`` pairs of different documents for "unmatched". Only the histograms sample pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import UsageError
from ..vectors import normalize


def unit_rows(x: np.ndarray) -> np.ndarray:
    """``x`` as float64 rows of length 1 (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise UsageError(f"expected a 2-D array of embeddings, got shape {x.shape}")
    return normalize(x, np.float64)


def centroid(x: np.ndarray) -> np.ndarray:
    """The mean of the normalised rows (the modality's centroid; its length is below 1)."""
    return unit_rows(x).mean(axis=0)


def centroid_gap(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """The gap between two sets of embeddings: the Euclidean distance between their centroids
    (the paper's and "Mind the Gap"'s measure) and the cosine of the two centroids."""
    ca, cb = centroid(a), centroid(b)
    norms = float(np.linalg.norm(ca) * np.linalg.norm(cb))
    return {
        "distance": float(np.linalg.norm(ca - cb)),
        "cosine": float(ca @ cb / norms) if norms > 0 else 0.0,
    }


def mean_cosine_within(x: np.ndarray) -> float | None:
    """Mean cosine over all pairs of distinct rows (self-pairs excluded); None for fewer than 2 rows.

    ``sum_{i != j} x_i . x_j = |sum_i x_i|^2 - sum_i |x_i|^2``."""
    x = unit_rows(x)
    n = len(x)
    if n < 2:
        return None
    total = x.sum(axis=0)
    return float((total @ total - np.einsum("ij,ij->", x, x)) / (n * (n - 1)))


def mean_cosine_across(a: np.ndarray, b: np.ndarray) -> float | None:
    """Mean cosine over all pairs of a row of ``a`` and a row of ``b``: the dot product of the centroids."""
    if len(a) == 0 or len(b) == 0:
        return None
    return float(centroid(a) @ centroid(b))


def matched_cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float | None]:
    """For paired rows (row ``i`` of ``a`` and of ``b`` are two parts of one document: its text and
    its image), the mean cosine of matched pairs (same document) and of unmatched pairs (every
    other document's part), and their difference."""
    a, b = unit_rows(a), unit_rows(b)
    if a.shape != b.shape:
        raise UsageError(f"paired parts must have the same shape, got {a.shape} and {b.shape}")
    n = len(a)
    if n == 0:
        return {"matched": None, "unmatched": None, "difference": None}
    same = np.einsum("ij,ij->i", a, b)
    matched = float(same.mean())
    unmatched = float((a.sum(axis=0) @ b.sum(axis=0) - same.sum()) / (n * (n - 1))) if n > 1 else None
    return {
        "matched": matched,
        "unmatched": unmatched,
        "difference": None if unmatched is None else matched - unmatched,
    }


def shares(labels: Sequence[str], categories: Sequence[str]) -> dict[str, float]:
    """The share of each category among ``labels`` (zero for an absent one; all zero when empty)."""
    labels = list(labels)
    return {c: (labels.count(c) / len(labels) if labels else 0.0) for c in categories}


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Total-variation distance between two share dicts: half the sum of absolute differences
    (0: the same mix; 1: no category in common)."""
    keys = set(p) | set(q)
    return 0.5 * float(sum(abs(p.get(c, 0.0) - q.get(c, 0.0)) for c in keys))


def share_ratio(found: Mapping[str, float], corpus: Mapping[str, float], category: str) -> float | None:
    """How over-represented ``category`` is in ``found`` relative to ``corpus`` (1: as often as in
    the corpus; None when the corpus has none)."""
    base = corpus.get(category, 0.0)
    return found.get(category, 0.0) / base if base > 0 else None


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows projected on their first two principal components (numpy SVD of the centred rows),
    and the share of variance each component explains."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return np.zeros((0, 2)), np.zeros(2)
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2]
    if len(components) < 2:  # one row or one dimension: pad the missing axis with zeros
        components = np.vstack([components, np.zeros((2 - len(components), x.shape[1]))])
    variance = s**2
    explained = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
    return centred @ components.T, np.pad(explained, (0, 2 - len(explained)))


def sample_pair_cosines(a: np.ndarray, b: np.ndarray | None = None, *, n: int, rng: np.random.Generator) -> np.ndarray:
    """Cosines of ``n`` random pairs, for histograms: two distinct rows of ``a`` (``b`` None), or a
    row of ``a`` and a row of ``b``."""
    a = unit_rows(a)
    if b is None:
        if len(a) < 2:
            return np.zeros(0)
        i = rng.integers(0, len(a), n)
        j = (i + rng.integers(1, len(a), n)) % len(a)  # never i itself
        return np.einsum("ij,ij->i", a[i], a[j])
    b = unit_rows(b)
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0)
    return np.einsum("ij,ij->i", a[rng.integers(0, len(a), n)], b[rng.integers(0, len(b), n)])


def sample_unmatched_cosines(a: np.ndarray, b: np.ndarray, *, n: int, rng: np.random.Generator) -> np.ndarray:
    """Cosines of ``n`` random unmatched pairs (row ``i`` of ``a``, row ``j != i`` of ``b``)."""
    a, b = unit_rows(a), unit_rows(b)
    if len(a) < 2:
        return np.zeros(0)
    i = rng.integers(0, len(a), n)
    j = (i + rng.integers(1, len(a), n)) % len(a)
    return np.einsum("ij,ij->i", a[i], b[j])

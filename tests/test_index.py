import numpy as np
import pytest

from conftest import random_unit
from mixsearch import ExactIndex, VectorIndexError
from mixsearch import index as index_module


def brute_force(q, d, k):
    scores = q @ d.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def test_exact_matches_brute_force_in_any_chunking(monkeypatch):
    rng = np.random.default_rng(1)
    docs, queries = random_unit(rng, 5000, 32), random_unit(rng, 7, 32)
    expected_scores, expected_rows = brute_force(queries, docs, 10)
    for budget in (index_module.SCORE_BUDGET, 4 * 7 * 1024):  # one chunk, then five
        monkeypatch.setattr(index_module, "SCORE_BUDGET", budget)
        scores, rows = ExactIndex(docs, [str(i) for i in range(len(docs))]).search(queries, 10)
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)


def test_mask_k_larger_than_allowed_and_ties():
    vectors = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    idx = ExactIndex(vectors, ["a", "b", "c", "d"])
    scores, rows = idx.search(np.array([[1, 0]], np.float32), k=3)
    assert rows.tolist() == [[0, 1, 3]]  # ties break by row order
    allowed = np.array([False, True, True, False])
    scores, rows = idx.search(np.array([[1, 0]], np.float32), k=3, allowed=allowed)
    assert rows.tolist() == [[1, 2, -1]] and scores[0, 2] == -np.inf
    scores, rows = idx.search(np.array([[1, 0]], np.float32), k=99)
    assert rows.shape == (1, 4)


def test_dimension_mismatch_is_named(tmp_path):
    idx = ExactIndex(np.eye(3, dtype=np.float32), ["a", "b", "c"])
    idx.save(tmp_path)
    loaded = ExactIndex.load(tmp_path)
    assert isinstance(loaded.vectors, np.memmap) and loaded.ids == ["a", "b", "c"]
    with pytest.raises(VectorIndexError, match=f"query dimension 5 does not match the index at {tmp_path}'s 3"):
        loaded.search(np.ones((1, 5), np.float32))

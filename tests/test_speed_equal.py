"""Issue 19's faster paths give the results of the implementations they replaced (kept here, frozen,
as references): top-10 equal, scores within float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest

from mixsearch.index import exact as exact_module
from mixsearch.index.exact import ExactIndex


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def old_exact_search(vectors: np.ndarray, queries: np.ndarray, k: int, allowed=None, half=False, rows=None):
    """mixsearch 0.3.0's ExactIndex search (torch product per chunk, fp16 scored in half precision
    then rescored in float32), one part."""
    import torch

    n = len(vectors)
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    rows = rows or exact_module.chunk_rows(len(queries), vectors.shape[1])
    query_t = torch.from_numpy(queries)
    if half:
        query_t = query_t.half()
    found_scores, found_rows = [], []
    for start in range(0, n, rows):
        block = torch.from_numpy(np.ascontiguousarray(vectors[start : start + rows]))
        scores = query_t @ (block if half else block.float()).T
        if allowed is not None:
            scores.masked_fill_(torch.from_numpy(~allowed[start : start + len(block)]), -np.inf)
        top_scores, top_rows = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        found_scores.append(top_scores.float().numpy())
        found_rows.append(top_rows.numpy() + start)
    cand_scores, cand_rows = np.concatenate(found_scores, axis=1), np.concatenate(found_rows, axis=1)
    if half:
        finite = np.isfinite(cand_scores)
        exact = np.einsum("qd,qcd->qc", queries, vectors[np.clip(cand_rows, 0, None)].astype(np.float32))
        cand_scores = np.where(finite, exact, cand_scores).astype(np.float32)
    order = np.lexsort((cand_rows, -cand_scores), axis=1)[:, :k]
    best_scores = np.take_along_axis(cand_scores, order, axis=1)
    best_rows = np.take_along_axis(cand_rows, order, axis=1)
    best_rows[~np.isfinite(best_scores)] = -1
    return best_scores, best_rows


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("n_queries", [1, 13])
@pytest.mark.parametrize("kernel", ["numpy", "torch"])
@pytest.mark.parametrize("filtered", [False, True])
def test_exact_search_equals_the_old_implementation(dtype, n_queries, kernel, filtered, monkeypatch):
    rng = np.random.default_rng(19)
    vectors, queries = _unit(rng, 6000, 48), _unit(rng, n_queries, 48)
    allowed = rng.random(len(vectors)) < 0.3 if filtered else None
    monkeypatch.setattr(exact_module, "SCORE_BUDGET", 4 * 1400 * (n_queries + 48))  # several chunks, one short
    index = ExactIndex(vectors, [str(i) for i in range(len(vectors))], dtype=dtype)
    index.kernels = {"single": kernel, "batch": kernel}
    stored = np.asarray(index.vectors)
    scores, rows = index.search_rows(queries, 10, allowed=allowed)
    old_scores, old_rows = old_exact_search(stored, queries, 10, allowed, half=dtype == "float16")
    np.testing.assert_array_equal(rows, old_rows)
    np.testing.assert_allclose(scores, old_scores, atol=1e-5)
    if allowed is not None:
        assert allowed[rows].all()


def test_float16_scores_are_float32_products_of_the_stored_rows():
    rng = np.random.default_rng(3)
    vectors, queries = _unit(rng, 3000, 32), _unit(rng, 5, 32)
    index = ExactIndex(vectors, [str(i) for i in range(len(vectors))], dtype="float16")
    truth = queries @ vectors.astype(np.float16).astype(np.float32).T
    scores, rows = index.search_rows(queries, 10)
    np.testing.assert_array_equal(rows, np.argsort(-truth, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(scores, np.take_along_axis(truth, rows, axis=1), atol=1e-6)


def test_kernels_are_named_per_shape():
    eye = np.eye(4, dtype=np.float32)
    index = ExactIndex(eye, list("abcd"))
    assert index.kernel(1)["scores"] == "numpy" and index.kernel(1)["top_k"] == "numpy argpartition"
    assert index.kernel(100)["scores"] in ("auto", "numpy", "torch") and index.kernel(100)["top_k"] == "torch topk"
    half = ExactIndex(eye, list("abcd"), dtype="float16")
    assert half.kernel(1)["scores"].startswith("torch half precision")
    assert half.kernel(100)["convert"].startswith("torch")
    index.kernels = {"single": "blas?", "batch": "numpy"}
    with pytest.raises(Exception, match="kernel"):
        index.search_rows(eye[:1], 2)


def _spied_products(monkeypatch) -> list[str]:
    """The kernel of every chunk scored from now on, in order (the last one also in ``used[-1]``)."""
    used: list[str] = []
    real = exact_module._product

    def product(kernel):
        inner = real(kernel)

        def spy(queries, rows, out):
            used.append(kernel)
            inner(queries, rows, out)

        return spy

    monkeypatch.setattr(exact_module, "_product", product)
    return used


def test_the_probe_alternates_then_keeps_the_faster_kernel(monkeypatch):
    """Batch kernel "auto": the first chunks are scored by numpy and torch in turn, each timed, and
    the faster one (here torch, by a clock on which every numpy chunk is slow) scores all the rest,
    in this search and the next; the results are those of a pinned kernel."""
    exact_module.forget_probes()
    monkeypatch.setattr(exact_module, "SCORE_BUDGET", 4 * 500 * 7)  # 500-row chunks: 12 of them
    rng = np.random.default_rng(5)
    vectors, queries = _unit(rng, 6000, 16), _unit(rng, 7, 16)
    index = ExactIndex(vectors, [str(i) for i in range(6000)])
    assert index.kernels["batch"] == "auto"
    pinned = ExactIndex(vectors, [str(i) for i in range(6000)])
    pinned.kernels = {"single": "numpy", "batch": "numpy"}
    expected = pinned.search_rows(queries, 10)

    used = _spied_products(monkeypatch)
    ticks = [0, 0]  # the clock, and how many chunks it has seen scored

    def fake_clock():  # a numpy chunk "takes" 100 ticks, a torch one 1
        if len(used) > ticks[1]:
            ticks[0] += 100 if used[-1] == "numpy" else 1
            ticks[1] = len(used)
        return ticks[0]

    monkeypatch.setattr(exact_module, "_clock", fake_clock)
    scores, rows = index.search_rows(queries, 10)
    probes = 2 * exact_module.PROBE_CHUNKS
    assert used[:probes] == ["numpy", "torch"] * exact_module.PROBE_CHUNKS
    assert len(used) == 12 and set(used[probes:]) == {"torch"}
    assert index.kernel(7)["scores"] == "torch" and "measured" in index.kernel(7)["chosen"]
    np.testing.assert_array_equal(rows, expected[1])
    np.testing.assert_allclose(scores, expected[0], atol=1e-5)
    used.clear()
    index.search_rows(queries, 10)
    assert used == ["torch"] * 12
    exact_module.forget_probes()


def test_pinned_kernels_are_never_probed(monkeypatch):
    exact_module.forget_probes()
    rng = np.random.default_rng(6)
    vectors, queries = _unit(rng, 3000, 16), _unit(rng, 5, 16)
    used = _spied_products(monkeypatch)
    index = ExactIndex(vectors, [str(i) for i in range(3000)])
    index.kernels = {"single": "numpy", "batch": "torch"}
    index.search_rows(queries, 10)
    assert set(used) == {"torch"} and index.kernel(5)["chosen"].startswith("set")
    used.clear()
    monkeypatch.setenv(exact_module.KERNEL_ENV, "numpy")  # pinned for the process
    from_env = ExactIndex(vectors, [str(i) for i in range(3000)])
    assert from_env.kernels == {"single": "numpy", "batch": "numpy"}
    from_env.search_rows(queries, 10)
    assert set(used) == {"numpy"}
    monkeypatch.setenv(exact_module.KERNEL_ENV, "batch=torch, single=numpy")
    assert exact_module.default_kernels() == {"single": "numpy", "batch": "torch"}
    monkeypatch.setenv(exact_module.KERNEL_ENV, "blas")
    with pytest.raises(Exception, match=exact_module.KERNEL_ENV):
        ExactIndex(vectors, [str(i) for i in range(3000)])
    assert not exact_module._PROBES  # nothing measured: every search was pinned


def test_a_single_query_probe_never_imports_torch():
    """Single-query kernel "auto" in a fresh process without torch: numpy, chosen without a probe."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from mixsearch.index import exact\n"
        "i = exact.ExactIndex(np.eye(8, dtype=np.float32), list('abcdefgh'))\n"
        "i.kernels = {'single': 'auto', 'batch': 'auto'}\n"
        "i.search_rows(np.eye(8, dtype=np.float32)[:1], 3)\n"
        "print(i.kernel(1)['scores'], 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["numpy", "False"]


def old_paper_ndcg(qrels, run, k):
    """mixsearch 0.3.0's paper_ndcg: scikit-learn's ndcg_score, called once per query."""
    from sklearn.metrics import ndcg_score

    from mixsearch.eval.metrics import judged_queries

    values = {}
    for q in judged_queries(qrels):
        ranked = sorted((run.get(q) or {}).items(), key=lambda kv: -kv[1])[:k]
        rel = np.array([[float(qrels[q].get(d, 0)) for d, _ in ranked]])
        score = np.array([[s for _, s in ranked]], dtype=float)
        if not ranked or rel.sum() <= 0:
            values[q] = 0.0
        elif len(ranked) == 1:
            values[q] = 1.0
        else:
            values[q] = float(ndcg_score(rel, score, k=k))
    return values


@pytest.mark.parametrize("k", [1, 3, 10, 100])
def test_paper_ndcg_equals_sklearn_per_query(k):
    pytest.importorskip("sklearn")
    from mixsearch.eval import paper_ndcg

    rng = np.random.default_rng(k)
    docs = [f"d{i}" for i in range(60)]
    qrels, run = {}, {}
    for q in range(300):
        judged = rng.choice(docs, size=rng.integers(1, 8), replace=False)
        qrels[f"q{q}"] = {d: int(rng.integers(0, 4)) for d in judged}  # graded, some 0
        if q % 17 == 0:
            continue  # absent from the run: scores 0
        retrieved = rng.choice(docs, size=rng.integers(1, 40), replace=False)
        # coarse scores: many ties, which sklearn averages
        run[f"q{q}"] = {d: float(rng.integers(0, 6) if q % 2 else rng.random()) for d in retrieved}
    run["q1"] = {}
    mean, values = paper_ndcg(qrels, run, k, per_query=True)
    old = old_paper_ndcg(qrels, run, k)
    assert list(values) == list(old)
    np.testing.assert_allclose([values[q] for q in old], list(old.values()), rtol=0, atol=1e-12)
    assert mean == pytest.approx(np.mean(list(old.values())), abs=1e-12)


def test_hnsw_thin_path_returns_faiss_own_hits():
    faiss = pytest.importorskip("faiss")
    from mixsearch.index.hnsw import HnswIndex

    rng = np.random.default_rng(5)
    vectors, queries = _unit(rng, 3000, 32), _unit(rng, 20, 32)
    ids = [f"d{i}" for i in range(len(vectors))]
    index = HnswIndex.build(vectors, ids, options={"ef_construction": 40, "ef_search": 64})
    found = index.search(queries, 10)
    raw_scores, raw_rows = index._graph.search(queries, 10, params=faiss.SearchParametersHNSW(efSearch=64))
    assert found.ids == [[ids[r] for r in row] for row in raw_rows]
    np.testing.assert_array_equal(found.scores, raw_scores)
    assert [index.search(q, 10).ids[0] for q in queries] == found.ids  # one query at a time: the same
    index.ef_search = 32  # a new ef_search takes effect at once (its parameters are cached per value)
    raw32 = index._graph.search(queries, 10, params=faiss.SearchParametersHNSW(efSearch=32))[1]
    assert index.search(queries, 10).ids == [[ids[r] for r in row] for row in raw32]
    index.delete(found.ids[0][:3])  # deleted rows: the filtered walk, never a deleted id
    assert not set(found.ids[0][:3]) & set(index.search(queries[0], 10).ids[0])

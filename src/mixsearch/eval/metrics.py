"""Ranking metrics: qrels and runs in, numbers out. No models, no indexes.

``qrels``: ``{query_id: {doc_id: relevance}}`` (relevance > 0 is relevant; graded gains are linear).
``run``:   ``{query_id: {doc_id: score}}`` (higher is better).

Two NDCG variants, never mixed up:

- ``evaluate`` — **trec_eval semantics**, computed by pytrec_eval (the trec_eval C code). NDCG@k
  is DCG of the top k of the run over the *ideal* DCG of the best k documents of the qrels, so a
  relevant document the run missed still counts in the ideal and lowers the score. Gains are the
  relevance grades (linear), discounts ``log2(rank + 1)``. trec_eval orders a run by score, ties
  broken by document id (descending); ``run_from_ranking`` gives scores that keep an engine's own
  order exactly. Queries are averaged over every query of the qrels with at least one relevant
  document; a query absent from the run scores 0 (as ``trec_eval -c``), where pytrec_eval on its
  own would silently leave it out of the mean.
- ``paper_ndcg`` — **the GR-CLIP paper's variant** (arXiv 2507.19054, its evaluation script):
  scikit-learn's ``ndcg_score`` applied to the *retrieved top k only* — ``y_true`` is the
  relevance of the k retrieved documents, ``y_score`` their scores — so its ideal DCG is the best
  order of what was retrieved and ignores relevant documents that were not retrieved. It is
  therefore >= the trec_eval figure, equal when every relevant document is within the top k. A
  query with no relevant document retrieved scores 0. Reported under names ending in ``[paper]``.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter

import numpy as np

from ..errors import UsageError, require

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]

DEFAULT_METRICS = ("ndcg@10", "ndcg@100", "recall@1")

_PATTERNS = {
    "ndcg": ("ndcg_cut", "ndcg_cut_{k}"),
    "recall": ("recall", "recall_{k}"),
    "p": ("P", "P_{k}"),
    "map": ("map_cut", "map_cut_{k}"),
}


def trec_measure(name: str) -> tuple[str, str]:
    """Our metric name -> (pytrec_eval measure family, the key it reports).

    ``ndcg@10`` -> ``ndcg_cut_10``; ``recall@1`` -> ``recall_1``; ``p@5`` -> ``P_5``;
    ``map@100`` -> ``map_cut_100``; ``mrr`` -> ``recip_rank`` (no cut-off); ``map`` -> ``map``.
    """
    low = name.lower()
    if low == "mrr":
        return "recip_rank", "recip_rank"
    if low in ("map", "ndcg"):
        return low, low
    m = re.fullmatch(r"(ndcg|recall|p|map)@(\d+)", low)
    if not m:
        raise UsageError(f"unknown metric {name!r}; use ndcg@K, recall@K, p@K, map@K, map, ndcg or mrr")
    family, key = _PATTERNS[m.group(1)]
    k = m.group(2)
    return f"{family}.{k}", key.format(k=k)


def judged_queries(qrels: Qrels) -> list[str]:
    """Queries with at least one relevant document: the ones a mean is taken over."""
    return [q for q, docs in qrels.items() if any(r > 0 for r in docs.values())]


def evaluate(qrels: Qrels, run: Run, metrics: Sequence[str] = DEFAULT_METRICS, *, per_query: bool = False) -> dict:
    """trec_eval numbers (via pytrec_eval): ``{metric: mean}``, plus ``{"per_query": {q: {metric: v}}}``
    when asked. The mean is over ``judged_queries(qrels)``; a query missing from the run scores 0."""
    pytrec_eval = require("pytrec_eval", "bench", "scoring with trec_eval semantics")

    queries = judged_queries(qrels)
    measures = {name: trec_measure(name) for name in metrics}
    qrels_int = {q: {d: int(r) for d, r in qrels[q].items()} for q in queries}
    run_float = {q: {d: float(s) for d, s in run[q].items()} for q in queries if q in run and run[q]}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels_int, {family for family, _ in measures.values()})
    scored = evaluator.evaluate(run_float) if run_float else {}
    table = {q: {name: float(scored.get(q, {}).get(key, 0.0)) for name, (_, key) in measures.items()} for q in queries}
    out: dict = {name: float(np.mean([table[q][name] for q in queries])) if queries else 0.0 for name in metrics}
    if per_query:
        out["per_query"] = table
    return out


def paper_ndcg(qrels: Qrels, run: Run, k: int, *, per_query: bool = False):
    """The paper's NDCG@k: sklearn ``ndcg_score`` over the retrieved top k only (see module doc).

    Returns the mean over ``judged_queries(qrels)`` (a query missing from the run scores 0), or
    ``(mean, {query: value})`` with ``per_query``. Computed for all queries at once in numpy,
    with ``ndcg_score``'s own rules (documents tied in score share their gains' mean), so the
    numbers are scikit-learn's (to float rounding) without a call per query.
    """
    queries = judged_queries(qrels)
    gains, scores, valid = _top_k_table(qrels, run, queries, k)
    values = paper_ndcg_rows(gains, scores, valid)
    table = dict(zip(queries, values.tolist()))
    mean = float(values.mean()) if len(values) else 0.0
    return (mean, table) if per_query else mean


def _top_k_table(qrels: Qrels, run: Run, queries: Sequence[str], k: int):
    """``(gains, scores, valid)``, each ``(queries, k)``: each query's retrieved top k by score
    (ties in run order, as a stable sort leaves them), padded where fewer were retrieved."""
    gains = np.zeros((len(queries), k))
    scores = np.zeros((len(queries), k))
    valid = np.zeros((len(queries), k), dtype=bool)
    for i, q in enumerate(queries):
        # = sorted(..., reverse=True)[:k], stable on ties, without sorting past k
        ranked = heapq.nlargest(k, (run.get(q) or {}).items(), key=itemgetter(1))
        if ranked:
            rel, m = qrels[q], len(ranked)
            gains[i, :m] = [float(rel.get(d, 0)) for d, _ in ranked]
            scores[i, :m] = [s for _, s in ranked]
            valid[i, :m] = True
    return gains, scores, valid


def paper_ndcg_rows(gains: np.ndarray, scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """sklearn ``ndcg_score`` of each row (one query's retrieved top k, best first, ``valid``
    marking the retrieved places): a row with no positive gain scores 0, one document 1."""
    n, k = gains.shape
    gains = np.where(valid, gains, 0.0)
    scored = gains.sum(axis=1) > 0
    if (gains[scored & (valid.sum(axis=1) > 1)] < 0).any():
        raise UsageError("ndcg_score should not be used on negative y_true values.")  # as sklearn says
    discount = 1 / np.log2(np.arange(k) + 2)
    # ties: scikit-learn gives each document of a run of equal scores the mean gain of that run
    starts = np.ones((n, k), dtype=bool)
    starts[:, 1:] = (scores[:, 1:] != scores[:, :-1]) | (valid[:, 1:] != valid[:, :-1])
    group = np.cumsum(starts.ravel()) - 1
    mean_gain = np.bincount(group, weights=gains.ravel()) / np.bincount(group)
    dcg = (mean_gain[group].reshape(n, k) * discount * valid).sum(axis=1)
    ideal = (-np.sort(-gains, axis=1) * discount).sum(axis=1)
    return np.where(scored & (ideal > 0), dcg / np.where(ideal > 0, ideal, 1.0), 0.0)


def paper_metric_name(k: int) -> str:
    """The name the paper's NDCG@k variant is reported under."""
    return f"ndcg@{k}[paper]"


def evaluate_all(
    qrels: Qrels, run: Run, metrics: Sequence[str] = DEFAULT_METRICS, *, paper: bool = True, per_query: bool = False
) -> dict:
    """trec_eval metrics, plus the paper's NDCG for every ``ndcg@K`` asked (named ``ndcg@K[paper]``)."""
    out = evaluate(qrels, run, metrics, per_query=per_query)
    if paper:
        for name in metrics:
            m = re.fullmatch(r"ndcg@(\d+)", name.lower())
            if m:
                k = int(m.group(1))
                mean, values = paper_ndcg(qrels, run, k, per_query=True)
                out[paper_metric_name(k)] = mean
                if per_query:
                    for q, v in values.items():
                        out["per_query"][q][paper_metric_name(k)] = v
    return out


def run_from_ranking(ranking: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """``{query: [doc ids, best first]}`` -> a run whose scores (n, n-1, ..., 1) reproduce that
    order exactly under any evaluator, whatever its tie-breaking. A document listed twice keeps
    its first (better) place."""
    run = {}
    for q, ids in ranking.items():
        scores: dict[str, float] = {}
        n = len(ids)
        for rank, d in enumerate(ids):
            scores.setdefault(d, float(n - rank))
        run[q] = scores
    return run


def restrict_qrels(qrels: Qrels, doc_ids: Iterable[str], queries: Iterable[str] | None = None) -> dict:
    """Qrels limited to documents that exist in a corpus (and to the given queries); queries left
    with no relevant document drop out."""
    docs = set(doc_ids)
    keep = set(queries) if queries is not None else None
    out = {}
    for q, rels in qrels.items():
        if keep is not None and q not in keep:
            continue
        r = {d: v for d, v in rels.items() if d in docs}
        if any(v > 0 for v in r.values()):
            out[q] = r
    return out

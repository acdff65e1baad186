"""Evaluation: ranking metrics with trec_eval semantics, and the GR-CLIP paper's NDCG variant (``metrics``)."""

from .metrics import (
    DEFAULT_METRICS,
    evaluate,
    evaluate_all,
    judged_queries,
    paper_metric_name,
    paper_ndcg,
    restrict_qrels,
    run_from_ranking,
    trec_measure,
)

__all__ = [
    "DEFAULT_METRICS",
    "evaluate",
    "evaluate_all",
    "judged_queries",
    "paper_metric_name",
    "paper_ndcg",
    "restrict_qrels",
    "run_from_ranking",
    "trec_measure",
]

"""Metrics against an independent hand computation on a hand-made run."""

import math

import pytest

from mixsearch.eval import evaluate, evaluate_all, paper_ndcg, restrict_qrels, run_from_ranking, trec_measure

QRELS = {
    "q1": {"d1": 1, "d3": 2, "d9": 1},  # d9 is relevant but never retrieved
    "q2": {"d5": 1},  # nothing relevant retrieved
    "q3": {"d7": 1},  # absent from the run: scores 0 (trec_eval -c)
    "q4": {"d8": 0},  # no relevant document: not averaged over
}
RUN = {
    "q1": {"d1": 0.9, "d2": 0.8, "d3": 0.7},
    "q2": {"d4": 0.5, "d6": 0.4},
    "q4": {"d8": 0.3},
}


def dcg(gains):
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


# by hand: q1 retrieves gains [1, 0, 2]; the ideal over all judged documents is [2, 1, 1]
Q1_TREC = dcg([1, 0, 2]) / dcg([2, 1, 1])  # 2 / 3.1309 = 0.638788
# the paper's variant: ideal over the retrieved documents only, [2, 1, 0]
Q1_PAPER = dcg([1, 0, 2]) / dcg([2, 1, 0])  # 2 / 2.6309 = 0.760188


def test_hand_numbers_are_what_we_think():
    assert Q1_TREC == pytest.approx(0.638788, abs=1e-6)
    assert Q1_PAPER == pytest.approx(0.760188, abs=1e-6)


def test_trec_eval_semantics_against_hand_computation():
    out = evaluate(QRELS, RUN, ("ndcg@3", "ndcg@10", "recall@1", "recall@3", "mrr"), per_query=True)
    # averaged over the 3 queries with a relevant document; q3 (no run) counts as 0
    assert set(out["per_query"]) == {"q1", "q2", "q3"}
    assert out["ndcg@3"] == pytest.approx(Q1_TREC / 3, abs=1e-6)
    assert out["ndcg@10"] == pytest.approx(Q1_TREC / 3, abs=1e-6)
    assert out["per_query"]["q1"]["ndcg@3"] == pytest.approx(Q1_TREC, abs=1e-6)
    assert out["per_query"]["q2"]["ndcg@3"] == 0 and out["per_query"]["q3"]["ndcg@3"] == 0
    assert out["recall@1"] == pytest.approx((1 / 3) / 3, abs=1e-6)  # d1 is 1 of q1's 3 relevant
    assert out["recall@3"] == pytest.approx((2 / 3) / 3, abs=1e-6)
    assert out["mrr"] == pytest.approx(1 / 3, abs=1e-6)


def test_ndcg_cutoff_and_graded_gains_are_linear():
    qrels = {"q": {"a": 2, "b": 1}}
    run = {"q": {"x": 3.0, "b": 2.0, "a": 1.0}}
    expected = dcg([0, 1, 2]) / dcg([2, 1])  # linear gains, as trec_eval (not 2^rel - 1)
    assert evaluate(qrels, run, ("ndcg@3",))["ndcg@3"] == pytest.approx(expected, abs=1e-6)
    assert evaluate(qrels, run, ("ndcg@1",))["ndcg@1"] == 0.0


def test_paper_variant_ignores_relevant_documents_not_retrieved():
    mean, per_query = paper_ndcg(QRELS, RUN, k=3, per_query=True)
    assert per_query["q1"] == pytest.approx(Q1_PAPER, abs=1e-6)
    assert per_query["q2"] == 0 and per_query["q3"] == 0
    assert mean == pytest.approx(Q1_PAPER / 3, abs=1e-6)
    both = evaluate_all(QRELS, RUN, ("ndcg@3", "recall@1"))
    assert both["ndcg@3[paper]"] > both["ndcg@3"]  # they differ exactly because of d9
    # when every relevant document is retrieved, the two agree
    full = {"q1": {"d1": 1, "d3": 2}}
    agree = evaluate_all(full, RUN, ("ndcg@3",))
    assert agree["ndcg@3"] == pytest.approx(agree["ndcg@3[paper]"], abs=1e-9)


def test_run_from_ranking_keeps_the_engine_order_through_ties():
    # trec_eval breaks score ties by document id (descending); rank-derived scores keep our order
    ranking = {"q": ["a", "b", "c"]}
    run = run_from_ranking(ranking)
    assert run["q"] == {"a": 3.0, "b": 2.0, "c": 1.0}
    qrels = {"q": {"a": 1}}
    assert evaluate(qrels, run, ("recall@1",))["recall@1"] == 1.0
    tied = {"q": {"a": 1.0, "b": 1.0, "c": 1.0}}
    assert evaluate(qrels, tied, ("recall@1",))["recall@1"] == 0.0  # trec_eval puts "c" first


def test_restrict_qrels_and_metric_names():
    assert restrict_qrels(QRELS, ["d1", "d5"], queries=["q1", "q2", "q3"]) == {"q1": {"d1": 1}, "q2": {"d5": 1}}
    assert trec_measure("ndcg@10") == ("ndcg_cut.10", "ndcg_cut_10")
    assert trec_measure("recall@1") == ("recall.1", "recall_1")
    with pytest.raises(ValueError, match="unknown metric"):
        trec_measure("bleu")

"""Fit a relevance map on a labelled dataset, end to end: load it, fit means as ``bench`` would,
index its mixed corpus and fit the map (``thresholds.fit_relevance_map``) on the judged queries.

Its own module because it runs a benchmark (``runner.ModelRun``), while ``runner`` imports
``thresholds`` for its study: here both are imported, neither imports this.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

from ..calibration import Calibrator, load_calibration
from ..encoders import Encoder, load_encoder
from ..errors import UsageError
from .config import BenchConfig
from .datasets import detect_kind, load_benchmark, mixed_corpus
from .plan import fit_plan, plan_calibration
from .runner import ModelRun
from .thresholds import DEPTH, RANDOM, fit_relevance_map, query_vectors


def fit_relevance(
    dataset: str | Path,
    model: str | Encoder,
    *,
    calibration: Calibrator | str | Path | None = None,
    calibrate_on: str = "auto",
    kind: str = "isotonic",
    dataset_kind: str = "auto",
    subset: str | None = None,
    split: str | None = None,
    max_queries: int | None = None,
    depth: int = DEPTH,
    random: int = RANDOM,
    alpha: float = 0.5,
    seed: int = 0,
    min_pairs: int = 10,
    cache_dir: Path | None = None,
    progress: bool | None = None,
) -> Calibrator:
    """Fit a relevance map on a labelled dataset (BEIR folder, captions file/folder, MixBench
    subset) and return a copy of the calibration carrying it, to save with ``save_calibration``.

    The corpus is the dataset's setting 3 mixed corpus (captions: a seeded 1:1:1 text / image /
    image+text mix; MixBench: its mixed corpus; BEIR: the corpus); the queries are the split's
    judged ones (``max_queries``: a seeded sample). ``calibration``: the calibration whose scores
    are mapped (a ``Calibrator``, a file, or ``"none"`` for plain CLIP); None fits means as
    ``bench`` would (``calibrate_on``, default: the dataset's training split).
    """
    if kind not in ("isotonic", "platt"):
        raise UsageError(f"unknown relevance map kind {kind!r}; expected isotonic or platt")
    cfg = BenchConfig(
        settings=(3,), alpha=alpha, seed=seed, max_queries=max_queries, cache_dir=cache_dir, progress=bool(progress)
    )
    kind_ = detect_kind(dataset) if dataset_kind == "auto" else dataset_kind
    bench = load_benchmark(dataset, kind_, subset=subset, split=split, seed=seed)  # a missing dataset fails first
    encoder = model if isinstance(model, Encoder) else load_encoder(model)
    if calibration is None:
        plan = plan_calibration(calibrate_on, dataset, kind_, bench, split, [subset] if subset else [], seed=seed)
        cal, _, _ = fit_plan(encoder, plan, 0, cfg)
    elif isinstance(calibration, Calibrator):
        cal = copy.deepcopy(calibration)
    elif str(calibration) == "none":
        cal = Calibrator("none", alpha, fitted_for=encoder.info())
    else:
        cal = load_calibration(calibration)
    with tempfile.TemporaryDirectory(prefix="mixsearch-relevance-") as work:
        run = ModelRun(encoder, bench, cfg, Path(work))
        docs, how = mixed_corpus(bench, seed)
        view = run.index(docs, "corpus").with_calibration(cal, alpha)
        qrels = run.qrels_for(view)
        vectors = {q: v for q, v in query_vectors(view, run.raw).items() if q in qrels}
        rel = fit_relevance_map(
            view, vectors, qrels, kind=kind, depth=depth, random=random, seed=seed, min_pairs=min_pairs
        )
    rel.info.update(dataset={k: v for k, v in bench.source.items() if k != "rule"}, corpus_rule=how)
    return view.calibrator.with_relevance(rel)

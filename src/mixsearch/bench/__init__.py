"""Bench: the GR-CLIP paper's experiments on MixBench, BEIR folders and caption datasets, run
through the same engine users search with.

``datasets`` loads benchmarks, ``plan`` decides where calibration means come from, ``settings``
runs the paper's three settings, ``runner`` drives them per dataset and model, ``report`` writes
JSON, Markdown, plots and a case-study page, ``render`` makes screenshots of text documents.
"""

from ..errors import BenchError
from .config import DEFAULT_GRID, BenchConfig
from .datasets import (
    KINDS,
    MIXBENCH_SUBSETS,
    Benchmark,
    Query,
    detect_kind,
    load_beir,
    load_benchmark,
    load_captions,
    load_mixbench,
    mixed_corpus,
)
from .plan import CalibrationPlan, calibration_items, plan_calibration
from .relevance import fit_relevance
from .runner import bench, environment, run_benchmark
from .thresholds import fit_relevance_map, relevance_pairs, threshold_study

__all__ = [
    "DEFAULT_GRID",
    "KINDS",
    "MIXBENCH_SUBSETS",
    "BenchConfig",
    "BenchError",
    "Benchmark",
    "CalibrationPlan",
    "Query",
    "bench",
    "calibration_items",
    "detect_kind",
    "environment",
    "fit_relevance",
    "fit_relevance_map",
    "load_beir",
    "load_benchmark",
    "load_captions",
    "load_mixbench",
    "mixed_corpus",
    "plan_calibration",
    "relevance_pairs",
    "run_benchmark",
    "threshold_study",
]

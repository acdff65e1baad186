"""``mixsearch bench``: plain vs GR-calibrated search on benchmark datasets (docs/evaluation.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ._app import DEFAULT_MODEL, BatchSize, CacheDir, Device, Runtime, Threads, command, floats, say


@command
def bench(
    dataset: str = typer.Argument(
        ..., help="MixBench (hub id or local copy), a BEIR folder, or a captions folder/file."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder: results.json, report.md, plots/, cases.html."),
    kind: str = typer.Option("auto", help="mixbench, beir, captions, or auto (detected from the files)."),
    subset: Optional[list[str]] = typer.Option(
        None, help="MixBench config (MSCOCO, Google_WIT, VisualNews, OVEN); repeat."
    ),
    split: Optional[str] = typer.Option(
        None, help="BEIR qrels split (default test); captions file (default dev.jsonl)."
    ),
    revision: Optional[str] = typer.Option(None, help="Dataset revision (hub datasets)."),
    qrels: Optional[Path] = typer.Option(
        None, help="MixBench qrels for a copy that ships none (MixBench2026): a qrels TSV or a MixBench25 copy."
    ),
    model: list[str] = typer.Option(
        [DEFAULT_MODEL], "--model", "-m", help="Model(s) to compare; repeat (e.g. openai/clip-vit-base-patch32)."
    ),
    calibration: Optional[list[Path]] = typer.Option(
        None, help="Calibration file(s), one per model, in --model order."
    ),
    calibrate_on: str = typer.Option(
        "auto",
        help="Where GR means are fitted: auto, split:NAME, subsets:A,B, or test "
        "(transductive, labelled so). See docs/evaluation.md.",
    ),
    settings: str = typer.Option("3", help="Settings to run, e.g. 1,2,3."),
    methods: str = typer.Option(
        "none,mean",
        help="Calibration methods to compare, e.g. none,mean,standardize,shift,zscore,rrf "
        "(README 'Calibration methods'); all fitted on the same calibration set.",
    ),
    p_grid: str = typer.Option("0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1", help="Setting 1 replacement probabilities."),
    alpha_grid: str = typer.Option("0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1", help="Setting 2 text weights."),
    replace: str = typer.Option(
        "image", help="Setting 1: replace text documents by their 'image', 'audio', 'video' or a 'screenshot'."
    ),
    alpha: float = typer.Option(0.5, help="Text weight of image+text documents in settings 1 and 3."),
    depth: int = typer.Option(100, help="Results retrieved per query."),
    max_queries: Optional[int] = typer.Option(None, help="Evaluate a seeded sample of this many queries."),
    max_calibration: int = typer.Option(5000, help="Most items per calibration mean (seeded sample)."),
    seed: int = typer.Option(0, help="Seed of every sampled choice (captions rule, replacement, mix, samples)."),
    case_queries: Optional[str] = typer.Option(None, help="Query ids for the case study, comma-separated."),
    cases: int = typer.Option(5, help="Queries in the case study when --case-queries is not given."),
    device: Device = None,
    batch_size: BatchSize = None,
    cache_dir: CacheDir = None,
    keep_work: bool = typer.Option(False, help="Keep the per-setting index folders under OUT/work."),
    threads: Threads = None,
    runtime: Runtime = "auto",
    thresholds: str = typer.Option(
        "",
        help="Relevance thresholds, e.g. 0.3,0.5,0.7: fit per-modality relevance maps on half the queries and "
        "report precision and recall per modality on the other half (setting 3's corpus).",
    ),
    relevance_kind: str = typer.Option("isotonic", help="Relevance map for --thresholds: isotonic or platt."),
) -> None:
    """Benchmark plain vs GR-calibrated search: MixBench, BEIR or caption datasets, settings 1-3."""
    from ..bench import BenchConfig
    from ..bench import bench as run_bench
    from ..encoders.base import set_threads
    from ..errors import UsageError

    try:
        chosen = tuple(int(s) for s in settings.split(",") if s.strip())
    except ValueError:
        chosen = ()
    if not chosen or set(chosen) - {1, 2, 3}:
        raise UsageError(f"--settings: expected 1, 2 and/or 3, got {settings!r}")
    from ..bench.settings import REPLACEMENTS
    from ..calibration import METHODS

    chosen_methods = tuple(dict.fromkeys(m.strip() for m in methods.split(",") if m.strip()))
    if not chosen_methods or set(chosen_methods) - set(METHODS):
        raise UsageError(f"--methods: expected some of {', '.join(METHODS)}, got {methods!r}")

    if replace not in REPLACEMENTS:
        raise UsageError(f"--replace: expected one of {', '.join(REPLACEMENTS)}, got {replace!r}")
    cfg = BenchConfig(
        settings=chosen,
        methods=chosen_methods,
        p_grid=floats(p_grid, "--p-grid"),
        alpha_grid=floats(alpha_grid, "--alpha-grid"),
        replace=replace,
        alpha=alpha,
        depth=depth,
        max_queries=max_queries,
        max_calibration=max_calibration,
        seed=seed,
        case_queries=tuple(q for q in (case_queries or "").split(",") if q),
        n_cases=cases,
        device=device,
        batch_size=batch_size,
        cache_dir=cache_dir,
        runtime=runtime,
        thresholds=_thresholds(thresholds, relevance_kind),
        relevance_kind=relevance_kind,
    )
    set_threads(threads)
    command_line = "mixsearch bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "mixsearch bench"
    _, paths = run_bench(
        dataset,
        model,
        out,
        kind=kind,
        subsets=subset or [],
        split=split,
        revision=revision,
        calibration_files=calibration or [],
        calibrate_on=calibrate_on,
        config=cfg,
        command=command_line,
        keep_work=keep_work,
        qrels=qrels,
    )
    say(f"report written to {out}: " + ", ".join(p.name for p in paths.values() if p.parent == out))
    typer.echo(paths["markdown"].read_text(encoding="utf-8"))


def _thresholds(text: str, kind: str) -> tuple[float, ...]:
    from ..calibration.relevance import KINDS, check_min_relevance
    from ..errors import UsageError

    if kind not in KINDS:
        raise UsageError(f"--relevance-kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    values = floats(text, "--thresholds")
    for t in values:
        if not 0.0 < t < 1.0:
            raise UsageError(f"--thresholds: each must lie strictly between 0 and 1, got {t:g}")
        check_min_relevance(t)
    return values

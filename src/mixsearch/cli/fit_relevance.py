"""``mixsearch fit-relevance``: fit a per-modality score -> relevance map on a labelled dataset and
write it, with the calibration it maps, to a calibration file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import DEFAULT_MODEL, CacheDir, Threads, command, say


@command
def fit_relevance(
    dataset: str = typer.Argument(
        ..., help="A labelled dataset: BEIR folder, captions folder/file, or MixBench copy (with --subset)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Calibration file to write, relevance map included."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="The model of the indexes it will serve."),
    calibration: Optional[str] = typer.Option(
        None,
        help="The calibration whose scores are mapped: a calibration file (the one your index uses) or 'none' "
        "(plain CLIP). Default: fit means as 'bench' does (--calibrate-on).",
    ),
    calibrate_on: str = typer.Option("auto", help="Without --calibration: auto, split:NAME, subsets:A,B or test."),
    kind: str = typer.Option("isotonic", help="isotonic (default) or platt."),
    dataset_kind: str = typer.Option("auto", "--dataset-kind", help="mixbench, beir, captions, or auto."),
    subset: Optional[str] = typer.Option(None, help="MixBench config (MSCOCO, Google_WIT, VisualNews, OVEN)."),
    split: Optional[str] = typer.Option(
        None, help="Split whose queries and qrels are fitted: BEIR qrels split (default test), captions file."
    ),
    max_queries: Optional[int] = typer.Option(None, help="Fit on a seeded sample of this many queries."),
    depth: int = typer.Option(50, help="Hard negatives: the best this many documents of each modality per query."),
    random: int = typer.Option(50, help="Random documents per query (seeded)."),
    alpha: float = typer.Option(0.5, help="Text weight of image+text documents (use your index's)."),
    min_pairs: int = typer.Option(
        10, help="Fewest relevant (and non-relevant) pairs for a modality's own map; fewer: the pooled map."
    ),
    seed: int = typer.Option(0, help="Seed of the sampled choices."),
    cache_dir: CacheDir = None,
    threads: Threads = None,
) -> None:
    """Fit a per-modality relevance map (for 'search --min-relevance') on a labelled dataset."""
    from .. import Calibrator, save_calibration
    from ..bench import fit_relevance as fit
    from ..calibration.relevance import RelevanceMap
    from ..encoders.base import set_threads
    from ..errors import UsageError

    RelevanceMap(kind)  # an unknown kind is a usage error, before the model loads
    Calibrator(alpha=alpha).check_params()
    if min_pairs < 1 or depth < 1 or random < 0:
        raise UsageError("--min-pairs and --depth must be positive, --random not negative")
    set_threads(threads)
    cal = fit(
        dataset,
        model,
        calibration=calibration,
        calibrate_on=calibrate_on,
        kind=kind,
        dataset_kind=dataset_kind,
        subset=subset,
        split=split,
        max_queries=max_queries,
        depth=depth,
        random=random,
        alpha=alpha,
        seed=seed,
        min_pairs=min_pairs,
        cache_dir=cache_dir,
        progress=True,
    )
    save_calibration(cal, out)
    rel = cal.relevance_
    assert rel is not None
    for m, c in rel.describe()["modalities"].items():
        own = "own map" if c["map"] == m else "pooled map"
        say(f"  {m:<10} {c['positives']:>6} relevant, {c['negatives']:>7} non-relevant pairs: {own}")
    say(
        f"wrote {out} ({cal.method} calibration + {rel.kind} relevance map on {rel.info['queries']} queries); "
        f"apply it with 'mixsearch recalibrate INDEX --calibration {out}', then search with --min-relevance"
    )

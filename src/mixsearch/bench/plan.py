"""Where the calibration means of a benchmark come from (never the test data, unless asked by
name), and fitting them for one model."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..calibration import Calibrator, fit_calibration, load_calibration
from ..config import cache_root
from ..encoders import Encoder
from ..errors import BenchError, UsageError
from ..progress import progress_bar
from ..types import Problem
from .config import BenchConfig
from .datasets import Benchmark, detect_kind, first_by_hash, load_benchmark, load_mixbench
from .render import render_to_file

log = logging.getLogger(__name__)


@dataclass
class CalibrationPlan:
    """Where the GR means come from: files (one per model), a benchmark (another split, other
    subsets), or — only when asked by name — the test data itself (transductive)."""

    kind: str  # "file" | "benchmark" | "test"
    description: str
    files: list[Path] = field(default_factory=list)
    benchmarks: list[Benchmark] = field(default_factory=list)


def plan_calibration(
    spec: str,
    path: str | Path,
    kind: str,
    test: Benchmark,
    split: str | None,
    subsets: Sequence[str],
    files: Sequence[Path] = (),
    revision: str | None = None,
    seed: int = 0,
    qrels: str | Path | None = None,
) -> CalibrationPlan:
    """Resolve ``--calibration FILE`` / ``--calibrate-on SPEC``.

    SPEC: ``auto`` (BEIR: the ``train`` qrels split; captions: ``train.jsonl`` beside the test file;
    MixBench: unified means pooled over the *other* subsets of this run, leave-one-out), ``split:NAME``
    (another split of the same dataset), ``subsets:A,B`` (MixBench: pooled over those configs),
    ``test`` (the test data itself: transductive, labelled as such in every report).
    """
    if files:
        return CalibrationPlan("file", "calibration file(s): " + ", ".join(map(str, files)), files=list(files))
    kind = detect_kind(path) if kind == "auto" else kind
    if spec == "test":
        return CalibrationPlan(
            "test", f"TRANSDUCTIVE: means fitted on the test data of {test.name} itself", benchmarks=[test]
        )
    if spec == "auto":
        if kind == "beir":
            if (Path(path) / "qrels" / "train.tsv").is_file() and (split or "test") != "train":
                spec = "split:train"
            else:
                raise BenchError(f"{path}: no train qrels to calibrate on; give --calibrate-on or --calibration")
        elif kind == "captions":
            p = Path(path)
            folder = p.parent if p.is_file() else p
            test_file = p.name if p.is_file() else (split or "dev.jsonl")
            if (folder / "train.jsonl").is_file() and test_file != "train.jsonl":
                spec = "split:train.jsonl"
            else:
                raise BenchError(f"{folder}: no train.jsonl to calibrate on; give --calibrate-on or --calibration")
        else:
            others = [s for s in subsets if s != test.name]
            if not others:
                raise BenchError(
                    "MixBench has no training split: calibrate on other subsets "
                    "(--calibrate-on subsets:A,B, or run several --subset for leave-one-out unified means), "
                    "on a calibration file (--calibration), or explicitly on the test data (--calibrate-on test)"
                )
            spec = "subsets:" + ",".join(others)
    if spec.startswith("split:"):
        name = spec[len("split:") :]
        p = Path(path)
        target = (p.parent if p.is_file() else p) if kind == "captions" else p
        bench = load_benchmark(
            target,
            kind,
            subset=test.name if kind == "mixbench" else None,
            split=name,
            revision=revision,
            seed=seed,
            qrels=qrels,
        )
        if kind == "captions" and Path(bench.source["path"]).resolve() == Path(test.source["path"]).resolve():
            raise UsageError(
                f"--calibrate-on {spec}: that is the test split; say --calibrate-on test to calibrate transductively"
            )
        return CalibrationPlan("benchmark", f"dataset-specific means: {test.name} split {name!r}", benchmarks=[bench])
    if spec.startswith("subsets:"):
        names = [s for s in spec[len("subsets:") :].split(",") if s]
        if test.name in names:
            raise UsageError(
                f"--calibrate-on {spec} includes the test subset {test.name}; "
                "say --calibrate-on test to calibrate transductively"
            )
        benches = [load_mixbench(path, s, revision, qrels, judged=False) for s in names]
        return CalibrationPlan(
            "benchmark", "unified means pooled over MixBench subsets " + ", ".join(names), benchmarks=benches
        )
    raise UsageError(f"unknown --calibrate-on {spec!r}; use auto, split:NAME, subsets:A,B or test")


def calibration_items(benches: Sequence[Benchmark], max_items: int | None, seed: int) -> dict[str, list]:
    """Query texts, document texts and document images (audio clips, videos) of calibration
    benchmarks, each capped at ``max_items`` (seeded). Only labels-free parts are used: no qrels."""
    queries = [q.text for b in benches for q in b.queries if q.text]
    docs = [d for b in benches for d in (b.corpus + (b.mixed or []))]
    texts = [d.text for d in docs if d.text]
    pick = lambda xs, what: first_by_hash(list(dict.fromkeys(xs)), max_items, seed, f"calibration-{what}")  # noqa: E731
    out = {"queries": pick(queries, "query"), "texts": pick(texts, "text")}
    for media, name in (("image", "images"), ("audio", "audios"), ("video", "videos")):
        items = [str(getattr(d, media)) for d in docs if getattr(d, media) is not None]
        if media == "image" or items:  # images as before; audio and video only where there are some
            out[name] = pick(items, media)
    return out


def fit_plan(
    encoder: Encoder, plan: CalibrationPlan, model_index: int, cfg: BenchConfig
) -> tuple[Calibrator, dict, Calibrator | None]:
    """The GR calibrator for this model, its record, and (screenshot setting 1) a copy whose image
    mean is fitted on screenshots of the calibration texts instead of photos."""
    if plan.kind == "file":
        path = plan.files[model_index if len(plan.files) > 1 else 0]
        cal = load_calibration(path)
        cal.check_model(encoder.fingerprint, encoder.name)
        record: dict[str, Any] = {
            "source": f"file {path}",
            "provenance": cal.provenance,
            "counts": cal.counts_,
            "fitted_for": cal.fitted_for,
        }
        if 1 in cfg.settings and cfg.replace == "screenshot" and "image" not in cal.counts_:
            raise BenchError(f"{path}: no image mean, which screenshots need")
        return cal, record, None
    items = calibration_items(plan.benchmarks, cfg.max_calibration, cfg.seed)
    # items["queries"] feeds the query mean, "texts" the text mean, "images" the image mean
    role_of = {"queries": "query", "texts": "text", "images": "image", "audios": "audio", "videos": "video"}
    for name, role in role_of.items():
        if role != "query" and role not in encoder.modalities:
            items[name] = []
    used = {name: values for name, values in items.items() if values}
    log.info(
        "fitting calibration means (%s): %s", plan.description, ", ".join(f"{k} {len(v)}" for k, v in used.items())
    )
    problems: list[Problem] = []
    cal = fit_calibration(
        encoder,
        {role_of[name]: values for name, values in used.items()},
        cache_dir=cfg.cache_dir,
        progress=cfg.progress,
        report=problems.append,
    )
    cal = cal.with_params(
        provenance={
            "plan": plan.kind,
            "description": plan.description,
            "datasets": [b.source for b in plan.benchmarks],
            "items": {k: len(v) for k, v in used.items()},
            "max_calibration": cfg.max_calibration,
            "seed": cfg.seed,
        }
    )
    record = {
        "source": plan.description,
        "transductive": plan.kind == "test",
        "provenance": cal.provenance,
        "counts": cal.counts_,
        "skipped_items": len(problems),
    }
    screens = None
    if 1 in cfg.settings and cfg.replace == "screenshot" and "image" in encoder.modalities:
        texts = items["texts"]
        paths = [
            str(render_to_file(t, screens_dir(cfg), cfg.render))
            for t in progress_bar(len(texts), "rendering calibration screenshots", cfg.progress, texts)
        ]
        shot = fit_calibration(encoder, {"image": paths}, cache_dir=cfg.cache_dir, progress=cfg.progress)
        # mean, std and score sample of the screenshots
        screens = cal.with_role("image", "image", of=shot).with_params(
            provenance={**(cal.provenance or {}), "image_mean": f"screenshots of {len(paths)} calibration texts"}
        )
        record["screenshot_image_mean"] = (
            f"setting 1 uses an image mean fitted on screenshots of {len(paths)} calibration texts"
        )
    return cal, record, screens


def screens_dir(cfg: BenchConfig) -> Path:
    """Where rendered screenshots are kept (content-addressed, so each is rendered once)."""
    return Path(cfg.cache_dir or cache_root()) / "screenshots"

"""Running a benchmark: for each dataset (subset) and model, fit the calibration its plan says,
encode the queries once, run the asked settings, and collect every number for the report.

Everything that ranks goes through the engine (``build_index``, then ``MixIndex.with_calibration``
views and ``MixIndex.search_vectors``): this package builds corpora and query sets, hands them to the
engine, and turns its hit lists into runs for ``mixsearch.eval``.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .._version import __version__
from ..calibration import Calibrator, save_calibration
from ..embedding import embed, open_cache
from ..encoders import Encoder, load_encoder
from ..engine import MixIndex, SearchResults, build_index
from ..errors import BenchError
from ..eval import evaluate_all, restrict_qrels, run_from_ranking
from ..types import Document, Hit
from . import settings as _settings
from .config import BenchConfig
from .cost import model_cost
from .datasets import Benchmark, Query, detect_kind, first_by_hash, load_benchmark, paired_media
from .plan import CalibrationPlan, fit_plan, plan_calibration
from .thresholds import threshold_study

log = logging.getLogger(__name__)


class ModelRun:
    """One model's queries against corpora built per setting, all through the engine."""

    def __init__(self, encoder: Encoder, bench: Benchmark, cfg: BenchConfig, work: Path):
        self.encoder, self.bench, self.cfg, self.work = encoder, bench, cfg, work
        self.problems: list[str] = []
        self.queries = first_by_hash(bench.queries, cfg.max_queries, cfg.seed, "query", key=lambda q: q.id)
        self.query_by_id = {q.id: q for q in self.queries}
        missing = sorted({m for q in self.queries for m in q.parts} - encoder.modalities)
        if missing:
            raise BenchError(f"model {encoder.name!r} cannot encode the queries' {', '.join(missing)}")
        cache = open_cache(encoder, cfg.cache_dir)
        # raw query embeddings, encoded once per model, grouped by the parts queries have
        self.raw: dict[tuple[str, ...], tuple[list[str], dict[str, np.ndarray]]] = {}
        groups: dict[tuple[str, ...], list[Query]] = {}
        for q in self.queries:
            groups.setdefault(q.parts, []).append(q)
        for parts, qs in groups.items():
            ok = np.ones(len(qs), dtype=bool)
            arrays = {}
            for m in parts:
                items = [getattr(q, m) if m == "text" else str(getattr(q, m)) for q in qs]
                out = embed(
                    encoder,
                    items,
                    m,
                    cache=cache,
                    progress=cfg.progress,
                    report=lambda p: self.problems.append(f"query: {p}"),
                    query=True,
                )
                arrays[m], ok = out.vectors, ok & out.ok
            self.raw[parts] = ([q.id for q, good in zip(qs, ok) if good], {m: a[ok] for m, a in arrays.items()})
        cache.close()

    def index(self, docs: list[Document], name: str) -> MixIndex:
        """Index ``docs`` (plain; calibrations are applied as views) under the run's work folder."""
        idx, report = build_index(
            docs,
            self.work / name,
            self.encoder,
            calibration="none",
            alpha=self.cfg.alpha,
            cache_dir=self.cfg.cache_dir,
            progress=self.cfg.progress,
        )
        self.problems += [f"{name}: {p}" for p in report.problems]
        return idx

    def rank(self, idx: MixIndex, cal: Calibrator, alpha: float, pushdown: bool = False) -> Ranking:
        """Search ``idx`` under ``cal`` at ``alpha`` (a calibration view: nothing is rewritten):
        ``{query: [Hit, ...]}``. ``pushdown``: every text hit before every image hit, each part
        in the engine's order (audio and video hits count as image hits)."""
        view = idx.with_calibration(cal, alpha)
        depth = self.cfg.depth
        out = Ranking(depth)
        for ids, parts in self.raw.values():
            if not ids:
                continue
            if pushdown:
                text = view.search_vectors(parts, k=depth, modality="text")
                media = view.search_vectors(parts, k=depth, modality=["image", "audio", "video"])
                out.add(ids, text, media)
            else:
                out.add(ids, view.search_vectors(parts, k=depth))
        return out

    def score(self, hits: Ranking | dict, qrels: dict, per_query: bool = False) -> dict:
        """trec_eval metrics (and the paper's NDCG) of the hit lists against ``qrels``."""
        ranked = hits.ids() if isinstance(hits, Ranking) else {q: [h.id for h in hs] for q, hs in hits.items()}
        return evaluate_all(qrels, run_from_ranking(ranked), self.cfg.metrics, per_query=per_query)

    def qrels_for(self, idx: MixIndex) -> dict:
        """The qrels of this run's queries, limited to the documents the index holds; none at all
        is an error (it would score 0 over 0 queries)."""
        qrels = restrict_qrels(self.bench.qrels, idx.ids, self.query_by_id)
        if not any(any(r > 0 for r in docs.values()) for docs in qrels.values()):
            raise BenchError(
                f"{self.bench.name}: no query has a relevant document among the {len(idx)} indexed "
                f"({len(self.queries)} queries, {len(self.bench.qrels)} in the qrels): nothing to score"
            )
        return qrels


class Ranking(Mapping[str, list[Hit]]):
    """``{query id: [Hit, ...]}`` of a ranking, each list made when first read (the case study reads
    a few); ``ids()`` gives every query's ids straight from the engine's results, for scoring."""

    def __init__(self, depth: int):
        self.depth = depth
        # query id -> (row, its results, or text then media results for a pushdown)
        self._at: dict[str, tuple[int, tuple[SearchResults, ...]]] = {}

    def add(self, ids: list[str], *results: SearchResults) -> None:
        """Query ``ids[i]`` is row ``i`` of ``results`` (of each, in turn, for a pushdown)."""
        self._at.update((q, (row, results)) for row, q in enumerate(ids))

    def __getitem__(self, q: str) -> list[Hit]:
        row, results = self._at[q]
        return [h for r in results for h in r[row]][: self.depth]

    def __iter__(self) -> Iterator[str]:
        return iter(self._at)

    def __len__(self) -> int:
        return len(self._at)

    def ids(self) -> dict[str, list[str]]:
        """``{query id: [document ids, best first]}``, no ``Hit`` made."""
        cols: dict[int, list[list[str]]] = {}  # each SearchResults' ids read once, not once per query
        out = {}
        for q, (row, results) in self._at.items():
            for r in results:
                if id(r) not in cols:
                    cols[id(r)] = r.ids()
            lists = [cols[id(r)][row] for r in results]
            out[q] = (lists[0] if len(lists) == 1 else [d for x in lists for d in x])[: self.depth]
        return out


def run_benchmark(
    bench: Benchmark,
    models: Sequence[str | Encoder],
    plan: CalibrationPlan,
    cfg: BenchConfig,
    work_dir: str | Path,
    save_dir: str | Path | None = None,
) -> dict:
    """Run the asked settings for every model on one benchmark; returns all numbers and the
    configuration (``report.write_report`` turns it into JSON, Markdown, plots and HTML).
    With ``save_dir``, each fitted calibration is saved there for reuse with ``index --calibration``."""
    started = time.perf_counter()
    work = Path(work_dir)
    out: dict = {
        "dataset": {"name": bench.name, **bench.source, "counts": bench.counts()},
        "calibration": {"plan": plan.kind, "description": plan.description},
        "models": {},
        "rows": [],
        "cases": [],
        "timings": {},
        "problems": [],
    }
    if plan.kind == "file" and len(plan.files) not in (1, len(models)):
        raise BenchError(f"{len(plan.files)} calibration files for {len(models)} models: give one per model, in order")
    for mi, model in enumerate(models):
        t0 = time.perf_counter()
        encoder = (
            model
            if isinstance(model, Encoder)
            else load_encoder(model, device=cfg.device, batch_size=cfg.batch_size, runtime=cfg.runtime)
        )
        name = model if isinstance(model, str) else encoder.name  # as the user named it
        log.info("[%s] model %s (%s)", bench.name, name, encoder.name)
        needs = {1: "image" if cfg.replace == "screenshot" else cfg.replace, 2: paired_media(bench.corpus)}
        lacking = {s: m for s, m in needs.items() if s in cfg.settings and m not in encoder.modalities}
        if lacking:
            media = sorted(set(lacking.values()))
            which = "settings 1 and 2 need" if len(lacking) == 2 else f"setting {next(iter(lacking))} needs"
            raise BenchError(
                f"{which} {'an' if media[0][0] in 'aei' else 'a'} {' and '.join(media)}-text model; {name!r} encodes "
                f"only {', '.join(sorted(encoder.modalities))} (run --settings 3 for a corpus it can encode)"
            )
        cal, cal_record, cal_screens = fit_plan(encoder, plan, mi, cfg)
        if save_dir is not None and cal.method != "none":
            path = Path(save_dir) / f"{_slug(name)}--{_slug(bench.name)}.safetensors"
            cal_record["file"] = str(save_calibration(cal, path))
        # measured before the run, so on the runtime the model starts on (PyTorch: FLOPs countable)
        cost = model_cost(encoder) if cfg.cost else None
        engine = ModelRun(encoder, bench, cfg, work / "indexes" / _slug(name))
        out["models"][name] = {"info": encoder.info(), "calibration": cal_record, "queries": len(engine.queries)}
        if cost is not None:
            out["models"][name]["cost"] = cost
        for setting in cfg.settings:
            ts = time.perf_counter()
            log.info("[%s] %s: setting %s", bench.name, name, setting)
            rows, cases = _settings.SETTINGS[setting](
                engine, cal if setting != 1 or cal_screens is None else cal_screens
            )
            for r in rows:
                r.update(dataset=bench.name, model=name, setting=setting)
            out["rows"] += rows
            if cases:
                out["cases"].append({"dataset": bench.name, "model": name, "setting": setting, **cases})
            out["timings"][f"{name} setting {setting}"] = round(time.perf_counter() - ts, 1)
        if cfg.thresholds:  # relevance thresholds, on setting 3's corpus (bench/thresholds.py)
            ts = time.perf_counter()
            out.setdefault("thresholds", []).append({"model": name, **threshold_study(engine, cal)})
            out["timings"][f"{name} thresholds"] = round(time.perf_counter() - ts, 1)
        out["problems"] += engine.problems[:200]
        out["timings"][f"{name} total"] = round(time.perf_counter() - t0, 1)
    out["timings"]["total"] = round(time.perf_counter() - started, 1)
    return out


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name).strip("/"))[-80:]


def environment() -> dict:
    """The machine and software a run used."""
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return {
        "mixsearch": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram": mem,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def bench(
    dataset: str | Path,
    models: Sequence[str | Encoder],
    out: str | Path,
    *,
    kind: str = "auto",
    subsets: Sequence[str] = (),
    split: str | None = None,
    revision: str | None = None,
    calibration_files: Sequence[Path] = (),
    calibrate_on: str = "auto",
    config: BenchConfig | None = None,
    command: str = "",
    keep_work: bool = False,
    qrels: str | Path | None = None,
) -> tuple[dict, dict]:
    """Load the dataset (each subset), plan the calibration, run every setting for every model,
    and write the report into ``out``. Returns ``(result, written paths)``."""
    from .report import write_report

    cfg = config or BenchConfig()
    out = Path(out)
    kind = detect_kind(dataset) if kind == "auto" else kind
    if kind == "mixbench" and not subsets:
        raise BenchError("MixBench needs --subset (MSCOCO, Google_WIT, VisualNews, OVEN; repeat it for several)")
    runs = []
    for subset in subsets if kind == "mixbench" else [None]:
        bench_ = load_benchmark(
            dataset, kind, subset=subset, split=split, revision=revision, seed=cfg.seed, qrels=qrels
        )
        plan = plan_calibration(
            calibrate_on, dataset, kind, bench_, split, subsets, calibration_files, revision, cfg.seed, qrels
        )
        log.info("[%s] %s; calibration: %s", bench_.name, bench_.counts(), plan.description)
        runs.append(
            run_benchmark(bench_, models, plan, cfg, out / "work" / _slug(bench_.name), save_dir=out / "calibrations")
        )
    config_record = {
        **cfg.record(),
        "command": command,
        "dataset": str(dataset),
        "kind": kind,
        "subsets": list(subsets),
        "split": split,
        "revision": revision,
        "calibrate_on": calibrate_on,
        "calibration_files": [str(p) for p in calibration_files],
        "qrels": str(qrels) if qrels is not None else None,
        "models": [m if isinstance(m, str) else m.name for m in models],
    }
    result = {"config": config_record, "environment": environment(), "runs": runs}
    paths = write_report(result, out)
    if not keep_work:
        shutil.rmtree(out / "work", ignore_errors=True)
    return result, paths

"""Relevance thresholds: fit a per-modality score -> relevance map on a labelled dataset, and
measure what one threshold does to each modality.

Fitting pairs (``relevance_pairs``): for each fitting query, scored by the index under the
calibration being mapped,
- every judged document of the query in the corpus (qrels > 0: relevant; judged 0: not);
- the ``depth`` best documents *of each document modality* (the engine's search with a modality
  filter): the hard negatives, the very documents a threshold has to cut, for every modality even
  when one modality dominates the overall top;
- ``random`` documents drawn per query (seeded), so the low end of the score range is mapped too.
Unjudged documents count as non-relevant (the usual IR convention). The estimate is then "the
share of relevant pairs among such candidates at this score", per document modality.

Bench (``threshold_study``, ``bench --thresholds``): the judged queries are split in two halves by
a seeded hash (``unit(seed, "relevance-fit", query)``); maps are fitted on the first half only and
every number is measured on the other, over each query's top ``depth`` hits on setting 3's mixed
corpus. Raw-score variants (plain CLIP, GR-calibrated cosine) are cut at the global score that
returns the *same total number of hits* as the calibrated, mapped variant at that threshold, so
the comparison is at equal volume and only how the cut spreads over modalities differs; picking
that cut-off on the evaluation half favours the raw variants, never the map.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..calibration import Calibrator
from ..calibration.relevance import RelevanceMap
from ..encoders import Encoder, load_encoder
from ..engine import MixIndex
from ..engine.fuse import presence
from ..errors import BenchError, UsageError, require
from .config import BenchConfig
from .datasets import detect_kind, load_benchmark, mixed_corpus, unit

log = logging.getLogger(__name__)

#: Thresholds every study measures (for the plot), besides those asked.
PLOT_GRID = tuple(round(i / 20, 2) for i in range(1, 20))
#: Fitting pairs per query: the best ``DEPTH`` documents of each modality and ``RANDOM`` drawn ones.
DEPTH, RANDOM = 50, 50


# -- fitting ----------------------------------------------------------------------------------------


def query_vectors(index: MixIndex, raw: Mapping[tuple[str, ...], tuple[list[str], dict]]) -> dict[str, np.ndarray]:
    """Calibrated query vectors under ``index``'s calibration, by query id, from raw embeddings
    grouped by the parts queries have (``ModelRun.raw``)."""
    out: dict[str, np.ndarray] = {}
    for ids, parts in raw.values():
        if ids:
            out.update(zip(ids, index._calibrate(parts)))
    return out


def _doc_vectors(index: MixIndex, rows: np.ndarray) -> np.ndarray:
    """The searched vectors of some documents, computed as the index computed them."""
    raw, present = index.raw(), presence(index.documents)
    parts = {m: np.asarray(raw[m][rows]) for m in raw}
    return index.calibrator.transform_documents(parts, {m: present[m][rows] for m in raw}, alpha=index.alpha)


def relevance_pairs(
    index: MixIndex,
    queries: Mapping[str, np.ndarray],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    depth: int = DEPTH,
    random: int = RANDOM,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scores, labels, modalities)`` of fitting pairs (module doc) for ``queries`` (calibrated
    vectors by id) against ``index``."""
    if not queries:
        raise BenchError("no queries to fit a relevance map on")
    qids = list(queries)
    qmat = np.stack([queries[q] for q in qids]).astype(np.float32)
    rows_of = {d: i for i, d in enumerate(index.ids)}
    pairs: dict[tuple[int, int], float] = {}
    for m in sorted(set(index.modality.tolist())):
        k = min(depth, int((index.modality == m).sum()))
        for qi, hits in enumerate(index.search_vectors(qmat, k=k, modality=m)):
            for h in hits:
                pairs[(qi, rows_of[h.id])] = h.score
    wanted: set[tuple[int, int]] = set()
    for qi, q in enumerate(qids):
        wanted.update((qi, rows_of[d]) for d in qrels.get(q, {}) if d in rows_of)
        rng = np.random.default_rng(int(unit(seed, "relevance-random", q) * 2**32))
        wanted.update((qi, int(r)) for r in rng.choice(len(index), size=min(random, len(index)), replace=False))
    todo = sorted(wanted - set(pairs))
    if todo:
        rows = np.array(sorted({r for _, r in todo}))
        vecs = dict(zip(rows.tolist(), _doc_vectors(index, rows)))
        for qi, r in todo:
            pairs[(qi, r)] = float(qmat[qi] @ vecs[r])
    keys = list(pairs)
    scores = np.array([pairs[key] for key in keys])
    labels = np.array([int(qrels.get(qids[qi], {}).get(index.ids[r], 0) > 0) for qi, r in keys])
    modalities = np.array([index.modality[r] for _, r in keys], dtype=object)
    return scores, labels, modalities


def fit_relevance_map(
    index: MixIndex,
    queries: Mapping[str, np.ndarray],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    kind: str = "isotonic",
    depth: int = DEPTH,
    random: int = RANDOM,
    seed: int = 0,
    min_pairs: int = 10,
) -> RelevanceMap:
    """A ``RelevanceMap`` of ``index``'s scores, fitted on ``queries`` (calibrated vectors by id)
    and their ``qrels``; ``info`` records how."""
    scores, labels, modalities = relevance_pairs(index, queries, qrels, depth=depth, random=random, seed=seed)
    rel = RelevanceMap(kind, min_positives=min_pairs, min_negatives=min_pairs).fit(scores, labels, modalities)
    rel.info = {
        "queries": len(queries),
        "pairs": len(scores),
        "negatives": f"top {depth} per document modality + {random} random per query (seed {seed})",
        "calibration": index.calibrator.method,
        "alpha": index.alpha,
        "corpus": {m: int((index.modality == m).sum()) for m in sorted(set(index.modality.tolist()))},
    }
    return rel


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
    from .plan import fit_plan, plan_calibration
    from .runner import ModelRun

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
        from ..calibration import load_calibration

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
    out = copy.deepcopy(view.calibrator)
    out.relevance_ = rel
    return out


# -- the bench study ---------------------------------------------------------------------------------


def split_queries(queries: Sequence[str], seed: int) -> tuple[list[str], list[str]]:
    """``(fit, evaluate)`` halves of query ids, by ``unit(seed, "relevance-fit", q) < 0.5``."""
    fit = [q for q in queries if unit(seed, "relevance-fit", q) < 0.5]
    return fit, [q for q in queries if unit(seed, "relevance-fit", q) >= 0.5]


def _measure(
    hits: list[tuple[str, str, float, int]],
    returned: np.ndarray,
    relevant: Mapping[str, int],
    modalities: list[str],
    predicted: np.ndarray | None = None,
) -> dict:
    """Per document modality (and overall): hits returned, relevant among them, precision, recall,
    and (mapped variants) the mean relevance the map predicted for them: precision's estimate."""
    out = {}
    labels = np.array([h[3] for h in hits], dtype=float)
    for m in [*modalities, "all"]:
        mine = np.array([m in ("all", h[1]) for h in hits], dtype=bool) & returned
        n, total = int(mine.sum()), relevant[m]
        tp = int(labels[mine].sum())
        out[m] = {
            "returned": n,
            "relevant_returned": tp,
            "precision": tp / n if n else None,
            "recall": tp / total if total else None,
            "predicted": float(predicted[mine].mean()) if predicted is not None and n else None,
        }
    return out


def threshold_study(engine, cal: Calibrator) -> dict:
    """Fit maps on one half of the judged queries, measure per-modality precision and recall at
    each threshold on the other half (module doc). ``engine``: the bench's ``ModelRun``."""
    cfg, bench = engine.cfg, engine.bench
    docs, how = mixed_corpus(bench, cfg.seed)
    idx = engine.index(docs, "thresholds")
    qrels = engine.qrels_for(idx)
    fit_q, eval_q = split_queries(sorted(qrels), cfg.seed)
    if not fit_q or not eval_q:
        raise BenchError(f"{bench.name}: {len(qrels)} judged queries cannot be split into fit and evaluation halves")
    modalities = sorted(set(idx.modality.tolist()))
    doc_modality = dict(zip(idx.ids, idx.modality.tolist()))
    relevant = {m: 0 for m in [*modalities, "all"]}
    for q in eval_q:
        for d, r in qrels[q].items():
            if r > 0:
                relevant[doc_modality[d]] += 1
                relevant["all"] += 1
    views = {
        "plain": idx.with_calibration(Calibrator("none", cfg.alpha), cfg.alpha),
        "calibrated": idx.with_calibration(cal, cfg.alpha),
    }
    maps, ranked = {}, {}
    for name, view in views.items():
        vectors = query_vectors(view, engine.raw)
        fit_vectors = {q: vectors[q] for q in fit_q if q in vectors}
        maps[name] = fit_relevance_map(view, fit_vectors, qrels, kind=cfg.relevance_kind, seed=cfg.seed)
        eval_ids = [q for q in eval_q if q in vectors]
        found = view.search_vectors(np.stack([vectors[q] for q in eval_ids]), k=cfg.depth)
        ranked[name] = [
            (h.id, h.modality, h.score, int(qrels[q].get(h.id, 0) > 0)) for q, hs in zip(eval_ids, found) for h in hs
        ]
    relevance = {name: maps[name].predict([h[2] for h in ranked[name]], [h[1] for h in ranked[name]]) for name in views}
    rows = []
    for t in sorted(set(cfg.thresholds) | set(PLOT_GRID)):
        mapped = relevance["calibrated"] >= t
        volume = int(mapped.sum())
        for variant, name in (
            ("plain", "plain"),
            ("calibrated", "calibrated"),
            ("plain+map", "plain"),
            ("calibrated+map", "calibrated"),
        ):
            scores = np.array([h[2] for h in ranked[name]])
            if variant.endswith("+map"):
                returned, cutoff = relevance[name] >= t, None
            else:  # the global raw-score cut-off returning the mapped variant's number of hits
                cutoff = float(np.sort(scores)[::-1][volume - 1]) if volume else float("inf")
                returned = scores >= cutoff
            predicted = relevance[name] if variant.endswith("+map") else None
            per = _measure(ranked[name], returned, relevant, modalities, predicted)
            precisions = [per[m]["precision"] for m in modalities if per[m]["precision"] is not None]
            rows.append(
                {
                    "variant": variant,
                    "threshold": t,
                    "asked": t in cfg.thresholds,
                    "cutoff": cutoff if cutoff is None or np.isfinite(cutoff) else None,
                    "hits": int(returned.sum()),
                    "per_modality": per,
                    "precision_spread": max(precisions) - min(precisions) if len(precisions) > 1 else None,
                }
            )
    return {
        "calibration_error": _calibration_error(rows, modalities),
        "corpus_rule": how,
        "modalities": modalities,
        "fit_queries": len(fit_q),
        "eval_queries": len(eval_q),
        "relevant": relevant,
        "depth": cfg.depth,
        "kind": cfg.relevance_kind,
        "maps": {name: m.describe() for name, m in maps.items()},
        "rows": rows,
    }


def _calibration_error(rows: list[dict], modalities: list[str]) -> dict[str, float | None]:
    """Per mapped variant: the mean |predicted relevance - observed precision| over every
    threshold and modality, weighted by the hits returned (0: the number means what it says)."""
    out: dict[str, float | None] = {}
    for variant in dict.fromkeys(r["variant"] for r in rows if r["variant"].endswith("+map")):
        cells = [r["per_modality"][m] for r in rows if r["variant"] == variant for m in modalities]
        pairs = [(c["returned"], abs(c["predicted"] - c["precision"])) for c in cells if c["returned"]]
        weight = sum(n for n, _ in pairs)
        out[variant] = sum(n * e for n, e in pairs) / weight if weight else None
    return out


# -- report ---------------------------------------------------------------------------------------


def _f(x) -> str:
    return "–" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def markdown(run: dict) -> list[str]:
    """The report.md section of one dataset's threshold studies (empty without any)."""
    parts: list[str] = []
    for study in run.get("thresholds", []):
        mods = study["modalities"]
        counts = ", ".join(f"{m} {study['relevant'][m]}" for m in mods)
        parts += [
            "",
            f"### Relevance thresholds: `{study['model']}`",
            "",
            f"Setting 3 corpus ({study['corpus_rule']}); {study['kind']} maps fitted on {study['fit_queries']} "
            f"queries, measured on the other {study['eval_queries']} (top {study['depth']} hits each; relevant "
            f"documents there: {counts}). Raw-score variants "
            "are cut at the cosine that returns as many hits as `calibrated+map` at that threshold. "
            "P = precision, R = recall per document modality, (in brackets) the mean relevance the map "
            "predicted for those hits; spread = max - min of the per-modality P.",
            "",
        ]
        header = ["variant", "t", "cut-off", "hits", *[f"{x} {m}" for m in mods for x in ("P", "R")], "P spread"]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for r in study["rows"]:
            if not r["asked"]:
                continue
            cells = [r["variant"], f"{r['threshold']:g}", _f(r["cutoff"]), str(r["hits"])]
            for m in mods:
                per = r["per_modality"][m]
                shown = _f(per["precision"]) + (f" ({per['predicted']:.2f})" if per["predicted"] is not None else "")
                cells += [shown, _f(per["recall"])]
            lines.append("| " + " | ".join([*cells, _f(r["precision_spread"])]) + " |")
        parts += lines
        errors = ", ".join(f"{v} {_f(e)}" for v, e in study["calibration_error"].items())
        parts += [
            "",
            f"Calibration error of the maps (mean |predicted - observed precision| per modality, weighted by "
            f"hits, over thresholds {PLOT_GRID[0]:g}-{PLOT_GRID[-1]:g}): {errors}.",
        ]
        notes = [n for m in study["maps"].values() for n in m.get("notes", [])]
        if notes:
            parts += ["", *[f"- map note: {n}" for n in notes]]
    return parts


def write_plots(result: dict, folder: Path) -> list[Path]:
    """One PNG per dataset and model: precision and recall per modality against the threshold,
    one panel per variant."""
    matplotlib = require("matplotlib", "bench", "bench's plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for run in result["runs"]:
        for study in run.get("thresholds", []):
            variants = list(dict.fromkeys(r["variant"] for r in study["rows"]))
            fig, axes = plt.subplots(2, len(variants), figsize=(3.2 * len(variants), 5.6), dpi=100, sharey=True)
            for col, variant in enumerate(variants):
                mine = [r for r in study["rows"] if r["variant"] == variant]
                for row, what in enumerate(("precision", "recall")):
                    ax = axes[row][col]
                    for m in study["modalities"]:
                        pts = [(r["threshold"], r["per_modality"][m][what]) for r in mine]
                        pts = [(x, y) for x, y in pts if y is not None]
                        ax.plot([x for x, _ in pts], [y for _, y in pts], marker=".", label=m)
                    ax.set(ylim=(0, 1.02), title=variant if row == 0 else None)
                    ax.grid(alpha=0.3)
                    if col == 0:
                        ax.set_ylabel(what)
                    if row == 1:
                        ax.set_xlabel("relevance threshold t")
            axes[0][0].legend(fontsize=8)
            fig.suptitle(f"{run['dataset']['name']} — {Path(study['model']).name}: per-modality precision / recall")
            fig.tight_layout()
            folder.mkdir(parents=True, exist_ok=True)
            name = "".join(
                c if c.isalnum() or c in "-_." else "_" for c in f"{run['dataset']['name']}_{study['model']}"
            )
            path = folder / f"thresholds_{name[-60:]}.png"
            fig.savefig(path)
            plt.close(fig)
            written.append(path)
    return written

"""The GR-CLIP paper's three settings, each a function of one model's run: build the setting's
corpus, index it through the engine, rank plain and calibrated through calibration views, score."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..calibration import Calibrator
from ..errors import BenchError, CalibrationError
from ..progress import progress_bar
from ..types import Document
from .config import BenchConfig
from .datasets import mixed_corpus, paired_media, unit
from .plan import screens_dir
from .render import render_to_file

if TYPE_CHECKING:
    from .runner import ModelRun, Ranking


#: What setting 1 can replace a text document by: its image, audio clip or video (as the
#: paper's Figure 5 does for text-audio and text-video), or a rendered screenshot of the text.
REPLACEMENTS = ("image", "audio", "video", "screenshot")


def corpus_counts(docs: Sequence[Document]) -> dict:
    """How many documents of each modality."""
    out: dict[str, int] = {}
    for d in docs:
        out[d.modality] = out.get(d.modality, 0) + 1
    return out


def _nearest(grid: Sequence[float], value: float) -> float:
    return min(grid, key=lambda x: (abs(x - value), x))


def _case_hits(hits: list, qrels: dict, n: int = 5) -> list[dict]:
    return [
        {
            "rank": h.rank,
            "id": h.id,
            "score": round(h.score, 5),
            "modality": h.modality,
            "text": (h.text or "")[:400] or None,
            "image": h.image,
            **{m: getattr(h, m) for m in ("audio", "video") if getattr(h, m)},
            "relevance": int(qrels.get(h.id, 0)),
        }
        for h in hits[:n]
    ]


def _pick_cases(cfg: BenchConfig, plain: Mapping, cal: Mapping, qrels: dict) -> list[str]:
    if cfg.case_queries:
        return [q for q in cfg.case_queries if q in plain]
    judged = sorted((q for q in qrels if q in plain), key=lambda q: unit(cfg.seed, "case", q))
    first, first_cal = _top_ids(plain), _top_ids(cal)  # ids only: no Hit made for the queries not shown
    differ = [q for q in judged if first.get(q, [])[:1] != first_cal.get(q, [])[:1]]
    return (differ + [q for q in judged if q not in differ])[: cfg.n_cases]


def _top_ids(ranked) -> dict[str, list[str]]:
    if hasattr(ranked, "ids"):
        return ranked.ids()
    return {q: [h.id for h in hits] for q, hits in ranked.items()}


def _cases(engine: ModelRun, label: str, plain: Mapping, cal: Mapping, qrels: dict) -> dict:
    chosen = _pick_cases(engine.cfg, plain, cal, qrels)
    queries = []
    for q in chosen:
        query = engine.query_by_id[q]
        queries.append(
            {
                "id": q,
                "text": query.text,
                "image": str(query.image) if query.image else None,
                "relevant": {d: r for d, r in qrels.get(q, {}).items() if r > 0},
                "plain": _case_hits(plain[q], qrels.get(q, {})),
                "calibrated": _case_hits(cal.get(q, []), qrels.get(q, {})),
            }
        )
    return {"label": label, "queries": queries}


def _plain(alpha: float) -> Calibrator:
    return Calibrator("none", alpha)


#: The row label of a method: ``none`` and ``mean`` keep the names reports have always used.
LABELS = {"none": "plain", "mean": "calibrated"}


def variants(cfg: BenchConfig, cal: Calibrator, alpha: float) -> list[tuple[str, str, Calibrator]]:
    """``(label, method, calibrator)`` of every method asked (``cfg.methods``), all from the one
    fit of the plan's calibration set (``Calibrator.with_method``)."""
    out = []
    for m in cfg.methods:
        c = _plain(alpha) if m == "none" else cal if m == cal.method else cal.with_method(m)
        if m == "zscore":
            c = c.with_alpha(alpha)
            c.score_stats_  # noqa: B018 - fitted once here, not again in every view's copy
        out.append((LABELS.get(m, m), m, c))
    return out


def _ranked(engine: ModelRun, idx, c: Calibrator, alpha: float, pushdown: bool = False) -> tuple[Ranking | None, str]:
    """``engine.rank``, or None with why when the method cannot apply to this corpus (and a note
    when it applies but cannot change anything)."""
    try:
        hits = engine.rank(idx, c, alpha, pushdown=pushdown)
    except CalibrationError as err:
        return None, f"n/a: {err}"
    if c.score_level and len(set(idx.modality.tolist())) == 1:
        return hits, "one document modality: ranks as none"
    return hits, ""


def _row(engine: ModelRun, hits: Ranking | None, note: str, qrels: dict, **fields) -> dict:
    row = {**fields, "queries": len(qrels), "metrics": None if hits is None else engine.score(hits, qrels)}
    return {**row, "note": note} if note else row


def setting1(engine: ModelRun, cal: Calibrator):
    """Text documents replaced by their image (audio clip, video, or a screenshot) with probability p."""
    cfg, bench = engine.cfg, engine.bench
    if cfg.replace not in REPLACEMENTS:
        raise BenchError(f"--replace must be one of {', '.join(REPLACEMENTS)}, not {cfg.replace!r}")
    media = "image" if cfg.replace == "screenshot" else cfg.replace
    pool = [d for d in bench.corpus if d.text is not None and (cfg.replace == "screenshot" or getattr(d, media))]
    if not pool:
        with_media = "" if cfg.replace == "screenshot" else f" and {'an' if media[0] in 'aeiou' else 'a'} {media}"
        raise BenchError(f"{bench.name}: no documents with text{with_media} for setting 1")
    if cfg.replace == "screenshot":
        swap: dict[str, Path | None] = {
            d.id: render_to_file(d.text, screens_dir(cfg), cfg.render)
            for d in progress_bar(len(pool), "rendering screenshots", cfg.progress, pool)
        }
    else:
        swap = {d.id: getattr(d, media) for d in pool}
    u = {d.id: unit(cfg.seed, "replace", d.id) for d in pool}
    rows, case = [], None
    case_p = _nearest(cfg.p_grid, 0.5)
    for p in cfg.p_grid:
        docs = [
            Document(id=d.id, where=d.where, **{media: swap[d.id]})  # type: ignore[arg-type]
            if u[d.id] < p
            else Document(id=d.id, text=d.text, where=d.where)
            for d in pool
        ]
        idx = engine.index(docs, "setting1")
        qrels = engine.qrels_for(idx)
        counts = corpus_counts(docs)
        results: dict[str, Mapping] = {}
        for variant, method, c in variants(cfg, cal, cfg.alpha):
            hits, note = _ranked(engine, idx, c, cfg.alpha)
            results[variant] = hits or {}
            common = dict(method=method, p=p, corpus=counts, replace=cfg.replace)
            rows.append(_row(engine, hits, note, qrels, variant=variant, **common))
            if method in ("none", "mean"):  # pushdown: a baseline for the vector methods that started it
                pushed, note = _ranked(engine, idx, c, cfg.alpha, pushdown=True)
                rows.append(_row(engine, pushed, note, qrels, variant=f"{variant}+pushdown", **common))
        if p == case_p and results.get("plain") and results.get("calibrated"):
            case = _cases(engine, f"setting 1, p = {p} ({cfg.replace})", results["plain"], results["calibrated"], qrels)
    return rows, case


def setting2(engine: ModelRun, cal: Calibrator):
    """Every document image+text (audio+text, video+text for such captions); sweep the text weight alpha."""
    cfg, bench = engine.cfg, engine.bench
    media = paired_media(bench.corpus)
    pool = [d for d in bench.corpus if d.text is not None and getattr(d, media) is not None]
    if not pool:
        raise BenchError(f"{bench.name}: no {media}+text documents for setting 2")
    docs = [Document(id=d.id, text=d.text, where=d.where, **{media: getattr(d, media)}) for d in pool]
    idx = engine.index(docs, "setting2")
    qrels = engine.qrels_for(idx)
    rows, case = [], None
    case_alpha = _nearest(cfg.alpha_grid, cfg.alpha)
    for alpha in cfg.alpha_grid:
        results: dict[str, Mapping] = {}
        for variant, method, c in variants(cfg, cal, alpha):
            hits, note = _ranked(engine, idx, c, alpha)
            results[variant] = hits or {}
            rows.append(
                _row(engine, hits, note, qrels, variant=variant, method=method, alpha=alpha, corpus=corpus_counts(docs))
            )
        if alpha == case_alpha and results.get("plain") and results.get("calibrated"):
            case = _cases(engine, f"setting 2, alpha = {alpha}", results["plain"], results["calibrated"], qrels)
    return rows, case


def setting3(engine: ModelRun, cal: Calibrator):
    """The mixed corpus (MixBench table): plain vs calibrated."""
    cfg = engine.cfg
    docs, how = mixed_corpus(engine.bench, cfg.seed)
    idx = engine.index(docs, "setting3")
    kept = set(idx.ids)
    qrels = engine.qrels_for(idx)
    counts = corpus_counts([d for d in docs if d.id in kept])
    rows: list[dict] = []
    results: dict[str, Mapping] = {}
    for variant, method, c in variants(cfg, cal, cfg.alpha):
        hits, note = _ranked(engine, idx, c, cfg.alpha)
        results[variant] = hits or {}
        row = {"variant": variant, "method": method, "alpha": cfg.alpha, "corpus": counts, "corpus_rule": how}
        row.update(queries=len(qrels), metrics=None, per_query=None)
        if hits is not None:
            scored = engine.score(hits, qrels, per_query=True)
            row.update(per_query=scored.pop("per_query"), metrics=scored)
        rows.append({**row, "note": note} if note else row)
    case = None
    if results.get("plain") and results.get("calibrated"):
        case = _cases(engine, "setting 3 (mixed corpus)", results["plain"], results["calibrated"], qrels)
    return rows, case


#: setting number -> the function that runs it
SETTINGS = {1: setting1, 2: setting2, 3: setting3}

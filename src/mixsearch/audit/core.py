"""``audit_index``: how large the modality gap of an index's model is on its own corpus, and how
much it biases rankings, plain vs calibrated; no labels needed.

Two parts. **Gap**: over a seeded sample of each part modality's stored raw embeddings (document
texts, images, ...), the centroid distance and cosine between modalities, the mean cosine within
and across modalities, and for image+text documents matched (same document) vs unmatched pairs;
the same after calibration. **Probes**: text queries (given, or document texts drawn from the
corpus; a drawn probe's own document is dropped from its hits) are ranked plain and calibrated,
and the share of each document modality in their top-k is compared with the corpus's own shares.

The calibrated side is the index's own calibration when it has one, else GR mean calibration fitted
on this corpus (what ``recalibrate --calibration corpus`` would apply), or what ``calibration`` names.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..calibration import Calibrator
from ..engine import MixIndex, open_index
from ..engine.fuse import CalibrationSpec, presence
from ..errors import InputError, UsageError
from ..types import DOCUMENT_MODALITIES, MODALITIES
from . import stats

log = logging.getLogger(__name__)

# Verdict thresholds. TV is the total-variation distance between the probes' pooled top-k
# modality shares and the corpus's shares (0: top-k mixes modalities as the corpus does).
#: Plain TV at or above this, and calibration lowering it by at least ``DROP_STRONG``: strong bias.
TV_STRONG = 0.25
#: Calibration lowering TV by this much or more is a bias it removes.
DROP_STRONG = 0.10
#: Below this drop calibration "changes little"; between the two it "helps".
DROP_SOME = 0.05
#: Centroid distance (text vs image, normalised embeddings) from which a gap counts as large; "Mind
#: the Gap" (Liang et al. 2022) reports 0.82 for CLIP ViT-B/32 on MSCOCO.
GAP_LARGE = 0.5
#: Centroid distance below which there is no measurable gap.
GAP_SMALL = 0.2
#: A calibrated TV at or above this is called out as a skew that is not the gap's.
SKEW_LEFT = 0.15
#: Probe examples kept for the report and the page.
EXAMPLES = 8
#: Random pairs drawn per histogram series.
HISTOGRAM_PAIRS = 4000


@dataclass
class AuditReport:
    """Every number of an audit (see ``to_dict``), the verdict, and what the page plots."""

    index: str
    model: dict
    calibration: dict
    corpus: dict
    gap: dict
    probes: dict
    verdict: str
    verdict_code: str
    settings: dict
    notes: list[str] = field(default_factory=list)
    plots: dict = field(default_factory=dict, repr=False)  # sampled points and cosines, for the page only

    def to_dict(self) -> dict:
        """Every number and the verdict, JSON-ready (without the plotted samples)."""
        return {
            "index": self.index,
            "model": self.model,
            "calibration": self.calibration,
            "corpus": self.corpus,
            "gap": self.gap,
            "probes": self.probes,
            "verdict": self.verdict,
            "verdict_code": self.verdict_code,
            "settings": self.settings,
            "notes": self.notes,
            "thresholds": thresholds(),
        }

    def write_json(self, path: str | Path) -> Path:
        """Write ``to_dict`` as JSON."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    def write_html(self, path: str | Path) -> Path:
        """Write the self-contained page: verdict, numbers, and the plots (PNG embedded as base64)."""
        from .page import render

        path = Path(path)
        path.write_text(render(self), encoding="utf-8")
        return path

    def summary(self) -> str:
        """The key numbers and the verdict, in a few lines for a terminal."""
        lines = [f"audit of {self.index} (model {self.model.get('name')}, {self.corpus['total']} documents)"]
        lines.append("  corpus: " + ", ".join(f"{m} {self.corpus['shares'][m]:.0%}" for m in self.corpus["modalities"]))
        for view in ("raw", "calibrated"):
            for pair, g in self.gap[view]["centroids"].items():
                lines.append(f"  {view:<10} centroid distance {pair}: {g['distance']:.3f} (cosine {g['cosine']:+.3f})")
            for pair, m in self.gap[view]["matched"].items():
                if m["matched"] is not None and m["unmatched"] is not None:
                    lines.append(
                        f"  {view:<10} {pair} cosine matched {m['matched']:+.3f} vs unmatched {m['unmatched']:+.3f}"
                    )
        if self.probes.get("n"):
            p = self.probes
            lines.append(f"  {p['n']} probes ({p['source']}), top-{p['k']} shares:")
            for row in ("corpus", "plain", "calibrated"):
                cells = ", ".join(f"{m} {p['shares'][row][m]:.0%}" for m in self.corpus["modalities"])
                extra = f"  TV {p['tv'][row]:.3f}" if row != "corpus" else ""
                lines.append(f"    {row:<10} {cells}{extra}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"verdict: {self.verdict}")
        return "\n".join(lines)


def thresholds() -> dict[str, float]:
    """The verdict's thresholds, as the report records them."""
    return {
        "tv_strong": TV_STRONG,
        "drop_strong": DROP_STRONG,
        "drop_some": DROP_SOME,
        "gap_large": GAP_LARGE,
        "gap_small": GAP_SMALL,
        "skew_left": SKEW_LEFT,
    }


def audit_index(
    index: MixIndex | str | Path,
    *,
    probes: Sequence[str] | str | Path | None = None,
    n_probes: int = 200,
    k: int = 10,
    sample: int = 5000,
    seed: int = 0,
    calibration: CalibrationSpec = None,
    progress: bool | None = None,
) -> AuditReport:
    """Audit an index (a ``MixIndex`` or its folder) for modality bias, without labels.

    ``probes``: query texts (a list, or a file: one per line, or JSON Lines with ``text``); None
    draws ``n_probes`` document texts from the corpus (seeded; their stored embeddings are used, so
    the model is not loaded), each probe's own document dropped from its hits. More than
    ``n_probes`` given probes are sampled down to ``n_probes``.
    ``sample``: document parts per modality the gap numbers, projection and histograms use (a
    seeded sample; all when fewer). ``calibration``: the calibrated side (a ``Calibrator``, a file,
    ``"corpus"``); None: the index's own, or GR means fitted on this corpus when the index is plain.
    """
    for name, value in (("n_probes", n_probes), ("k", k), ("sample", sample)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UsageError(f"{name} must be a positive whole number, got {value!r}")
    given = _read_probes(probes) if probes is not None else None
    idx = index if isinstance(index, MixIndex) else open_index(index)
    rng = np.random.default_rng(seed)
    notes: list[str] = []

    own_method = idx.calibrator.method
    log.info("audit: preparing the plain and calibrated views of %s", idx.folder)
    plain = idx if own_method == "none" else idx.with_calibration("none")
    if calibration is not None:
        calibrated, cal_source = idx.with_calibration(calibration), f"given ({_describe(calibration)})"
    elif own_method != "none":
        calibrated, cal_source = idx, f"the index's own ({idx.manifest.calibration.source})"
    else:
        calibrated, cal_source = idx.with_calibration(None), "GR means fitted on this corpus (the index is plain)"
        notes.append(
            "the index is plain (uncalibrated); the calibrated side shows what calibrating would do "
            "(mixsearch recalibrate INDEX --calibration corpus)"
        )

    modality = [str(m) for m in idx.documents["modality"]]
    present_modalities = [m for m in DOCUMENT_MODALITIES if m in modality]
    corpus_shares = stats.shares(modality, present_modalities)
    corpus = {
        "total": len(modality),
        "counts": {m: modality.count(m) for m in present_modalities},
        "shares": corpus_shares,
        "modalities": present_modalities,
    }

    gap, plots = _gap(idx, calibrated.calibrator, sample=sample, rng=rng)
    probe_report = _probes(idx, plain, calibrated, given, n_probes, k, rng, corpus_shares, progress)
    if probe_report.pop("_none", False):
        notes.append("no probes: the corpus has no document texts to draw them from; give probe texts")
    plots["shares"] = {
        "modalities": present_modalities,
        "corpus": corpus_shares,
        **{view: probe_report["shares"][view] for view in ("plain", "calibrated") if probe_report.get("n")},
    }
    code, verdict = decide(gap, probe_report, index_calibrated=(own_method != "none" and calibration is None))
    return AuditReport(
        index=str(idx.folder),
        model={key: idx.model.to_dict().get(key) for key in ("name", "fingerprint", "dim")},
        calibration={
            "index": {key: idx.manifest.calibration.to_dict().get(key) for key in ("method", "alpha", "source")},
            "compared": cal_source,
            "method": calibrated.calibrator.method,
        },
        corpus=corpus,
        gap=gap,
        probes=probe_report,
        verdict=verdict,
        verdict_code=code,
        settings={"n_probes": int(n_probes), "k": int(k), "sample": int(sample), "seed": int(seed)},
        notes=notes,
        plots=plots,
    )


def _describe(calibration: CalibrationSpec) -> str:
    return f"{calibration.method} calibrator" if isinstance(calibration, Calibrator) else str(calibration)


# -- the gap ----------------------------------------------------------------------------------


def _gap(idx: MixIndex, cal: Calibrator, *, sample: int, rng: np.random.Generator) -> tuple[dict, dict]:
    """Gap numbers on sampled document parts, raw and calibrated, and the points the page plots."""
    raw, present = idx.raw(), presence(idx.documents)
    parts = [m for m in MODALITIES if m in raw and present[m].any()]
    rows = {m: _sample_rows(np.flatnonzero(present[m]), sample, rng) for m in parts}
    views: dict[str, dict[str, np.ndarray]] = {"raw": {}, "calibrated": {}}
    for m in parts:
        part = np.asarray(raw[m][rows[m]], dtype=np.float32)
        views["raw"][m] = part
        views["calibrated"][m] = cal.transform(part, role=m)
    # documents with a text and a media part: matched pairs
    pairs: dict[str, np.ndarray] = {}
    if "text" in parts:
        for m in parts:
            if m != "text":
                both = np.flatnonzero(present["text"] & present[m])
                if len(both):
                    pairs[m] = _sample_rows(both, sample, rng)
    gap: dict[str, Any] = {
        "parts": {m: {"documents": int(present[m].sum()), "sampled": len(rows[m])} for m in parts},
        "paired": {
            f"text-{m}": {"documents": int((present["text"] & present[m]).sum()), "sampled": len(r)}
            for m, r in pairs.items()
        },
    }
    plots: dict[str, Any] = {"projection": {}, "histograms": {}}
    for view, x in views.items():
        centroids, across = {}, {}
        for i, a in enumerate(parts):
            for b in parts[i + 1 :]:
                centroids[f"{a}-{b}"] = stats.centroid_gap(x[a], x[b])
                across[f"{a}-{b}"] = stats.mean_cosine_across(x[a], x[b])
        matched = {}
        hist: dict[str, np.ndarray] = {}
        for m, r in pairs.items():
            t, v = np.asarray(raw["text"][r], dtype=np.float32), np.asarray(raw[m][r], dtype=np.float32)
            if view == "calibrated":
                t, v = cal.transform(t, role="text"), cal.transform(v, role=m)
            matched[f"text-{m}"] = stats.matched_cosines(t, v)
            hist[f"matched text-{m}"] = np.einsum("ij,ij->i", stats.unit_rows(t), stats.unit_rows(v))[:HISTOGRAM_PAIRS]
            hist[f"unmatched text-{m}"] = stats.sample_unmatched_cosines(t, v, n=HISTOGRAM_PAIRS, rng=rng)
        for m in parts:
            hist[f"within {m}"] = stats.sample_pair_cosines(x[m], n=HISTOGRAM_PAIRS, rng=rng)
        for i, a in enumerate(parts):
            for b in parts[i + 1 :]:
                hist[f"across {a}-{b}"] = stats.sample_pair_cosines(x[a], x[b], n=HISTOGRAM_PAIRS, rng=rng)
        gap[view] = {
            "centroids": centroids,
            "within": {m: stats.mean_cosine_within(x[m]) for m in parts},
            "across": across,
            "matched": matched,
        }
        stacked = np.vstack([x[m] for m in parts]) if parts else np.zeros((0, 2))
        points, explained = stats.pca_2d(stacked)
        labels = np.concatenate([[m] * len(x[m]) for m in parts]) if parts else np.zeros(0, dtype=str)
        plots["projection"][view] = {"points": points, "labels": labels, "explained": explained}
        plots["histograms"][view] = hist
    return gap, plots


def _sample_rows(candidates: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``n`` of the candidate rows, seeded, in row order (all when fewer)."""
    if len(candidates) <= n:
        return candidates
    return np.sort(rng.choice(candidates, n, replace=False))


# -- the probes -------------------------------------------------------------------------------


def _read_probes(probes: Sequence[str] | str | Path) -> list[str]:
    """Probe texts from a list, a text file (one per line) or JSON Lines (``text`` field or a string)."""
    if isinstance(probes, (str, Path)):
        path = Path(probes)
        if not path.is_file():
            raise UsageError(f"{path}: no such probes file (one query text per line, or JSON Lines with 'text')")
        texts = []
        jsonl = path.suffix.lower() in (".jsonl", ".json", ".ndjson")
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                text: Any = line.strip()
                if jsonl:
                    try:
                        record = json.loads(line)
                    except ValueError as err:
                        raise InputError(f"{path}:{number}: not valid JSON ({err})") from None
                    text = record.get("text") if isinstance(record, dict) else record
                    if not isinstance(text, str) or not text.strip():
                        raise InputError(f"{path}:{number}: expected a non-empty 'text' field or a JSON string")
                texts.append(text.strip())
        if not texts:
            raise InputError(f"{path}: no probe texts in it")
        return texts
    texts = list(probes)
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise UsageError(f"probe {i}: expected a non-empty text, got {t!r}")
    if not texts:
        raise UsageError("probes: an empty list; give texts, a file, or None to draw them from the corpus")
    return texts


def _probes(
    idx: MixIndex,
    plain: MixIndex,
    calibrated: MixIndex,
    given: list[str] | None,
    n_probes: int,
    k: int,
    rng: np.random.Generator,
    corpus_shares: dict[str, float],
    progress: bool | None,
) -> dict:
    """Rank the probes in both views; pooled top-k shares per document modality, TV and ratios."""
    texts_of = idx.documents["text"]
    own: list[str | None]
    if given is not None:
        chosen = sorted(rng.choice(len(given), n_probes, replace=False)) if len(given) > n_probes else range(len(given))
        texts, own = [given[i] for i in chosen], [None] * len(chosen)
        source = f"{len(given)} given texts" + (f", {n_probes} sampled" if len(given) > n_probes else "")
    else:
        with_text = np.flatnonzero([t is not None for t in texts_of])
        if len(with_text) == 0:
            return {"n": 0, "_none": True}
        rows = _sample_rows(with_text, n_probes, rng)
        texts, own = [str(texts_of[r]) for r in rows], [idx.ids[r] for r in rows]
        source = "document texts drawn from the corpus (each probe's own document dropped from its hits)"
    if given is None:  # the texts' embeddings are stored already: no model to load
        vectors = np.asarray(idx.raw()["text"][np.asarray(rows)], dtype=np.float32)
    else:
        log.info("audit: encoding %d probe texts", len(texts))
        vectors = idx.encoder.encode_query(texts, "text", progress=progress)
    extra = 1 if given is None else 0  # room to drop the probe's own document
    hits = {}
    for name, view in (("plain", plain), ("calibrated", calibrated)):
        log.info("audit: ranking %d probes, %s", len(texts), name)
        found = view.search_vectors({"text": vectors}, k=k + extra)
        hits[name] = [_drop_own(h, o, k) for h, o in zip(found, own)]
    categories = list(corpus_shares)
    result: dict[str, Any] = {
        "n": len(texts),
        "k": k,
        "source": source,
        "self_excluded": given is None,
        "shares": {"corpus": corpus_shares},
        "tv": {"corpus": 0.0},
        "own_modality_ratio": {},
        "hits_per_probe": {},
    }
    for name, lists in hits.items():
        labels = [h.modality for hl in lists for h in hl]
        result["shares"][name] = stats.shares(labels, categories)
        result["tv"][name] = stats.total_variation(result["shares"][name], corpus_shares)
        result["own_modality_ratio"][name] = stats.share_ratio(result["shares"][name], corpus_shares, "text")
        result["hits_per_probe"][name] = len(labels) / len(lists) if lists else 0.0
    result["examples"] = [
        {
            "probe": texts[i],
            "own": own[i],
            **{name: [{"id": h.id, "modality": h.modality} for h in hits[name][i]] for name in hits},
        }
        for i in range(min(EXAMPLES, len(texts)))
    ]
    return result


def _drop_own(hits: list, own: str | None, k: int) -> list:
    """The hits without the probe's own document, at most ``k``."""
    return [h for h in hits if h.id != own][:k]


# -- the verdict ------------------------------------------------------------------------------


def decide(gap: dict, probes: dict, *, index_calibrated: bool) -> tuple[str, str]:
    """The verdict (a code and a sentence) from the gap and probe numbers, by the module's thresholds.

    Codes: ``calibrate`` (strong bias that calibration removes), ``consider`` (some bias or a large
    gap), ``no_gap`` (nothing measurable), ``calibrated`` (the index is calibrated and that reduced
    the bias), ``calibrated_little`` (calibrated, changing little)."""
    distance = _text_gap(gap["raw"])
    gap_words = f"centroid distance {distance:.2f}" if distance is not None else "no text-media pairs to measure a gap"
    if not probes.get("n"):  # no probes: the gap alone decides
        if distance is None:
            return "no_gap", "nothing to compare: the corpus has one modality and no probes were given"
        if distance >= GAP_LARGE:
            return ("calibrated" if index_calibrated else "calibrate"), f"large modality gap ({gap_words}): " + (
                "the index is calibrated already" if index_calibrated else "calibrate"
            )
        if distance >= GAP_SMALL:
            return "consider", f"some modality gap ({gap_words}): calibrating may help"
        return "no_gap", f"no measurable gap ({gap_words}): calibration changes little"
    tv_plain, tv_cal = probes["tv"]["plain"], probes["tv"]["calibrated"]
    drop = tv_plain - tv_cal
    moved = f"top-{probes['k']} modality mix off the corpus's by TV {tv_plain:.2f} plain, {tv_cal:.2f} calibrated"
    if index_calibrated:
        if drop >= DROP_SOME:
            return (
                "calibrated",
                f"calibrated already: bias reduced from TV {tv_plain:.2f} to {tv_cal:.2f} ({gap_words})",
            )
        return "calibrated_little", f"calibrated already; calibration changes little here ({moved}; {gap_words})"
    ratio = probes["own_modality_ratio"].get("plain")
    if tv_plain >= TV_STRONG and drop >= DROP_STRONG:
        kind = "same-modality bias" if ratio is None or ratio > 1 else "modality bias"
        return "calibrate", f"strong {kind}: calibrate ({moved}; {gap_words})"
    if drop >= DROP_SOME or (distance is not None and distance >= GAP_LARGE):
        return "consider", f"some modality bias: calibrating helps a little ({moved}; {gap_words})"
    effect = "calibration changes little" if drop > -DROP_SOME else "calibration does not help (it moves the mix away)"
    # a skew that calibration leaves in place comes from the model's sense of relevance or the probes
    rest = "; the skew that stays is not the gap's doing" if tv_cal >= SKEW_LEFT else ""
    if distance is not None and distance >= GAP_SMALL:
        return "no_gap", f"small gap: {effect} ({moved}; {gap_words}{rest})"
    return "no_gap", f"no measurable gap: {effect} ({moved}; {gap_words}{rest})"


def _text_gap(view: dict) -> float | None:
    """The largest raw centroid distance between the text part and a media part."""
    distances = [g["distance"] for pair, g in view["centroids"].items() if "text" in pair.split("-")]
    return max(distances) if distances else None

"""The audit's HTML page: one self-contained file (plots as base64 PNG drawn by matplotlib, no
script, no network) from ``templates/audit.html.j2``, which Jinja2 autoescapes, so every
user-supplied text (document ids, probe texts, paths) is shown, never run."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import templates
from ..errors import require
from ..types import MODALITY_TAGS

if TYPE_CHECKING:
    from .core import AuditReport

COLOURS = {
    "text": "#1f77b4",
    "image": "#d62728",
    "audio": "#2ca02c",
    "video": "#9467bd",
    "multimodal": "#ff7f0e",
}
VIEW_TITLES = {"raw": "plain (raw embeddings)", "calibrated": "calibrated"}


def render(report: AuditReport) -> str:
    """The page for a report (``templates/audit.html.j2``)."""
    require("matplotlib", "audit", "the audit page's plots")
    import matplotlib

    matplotlib.use("Agg", force=False)
    figures = [
        ("projection", "2-D projection of document parts, before and after calibration", _projection(report)),
        ("histograms", "Cosine similarity histograms", _histograms(report)),
    ]
    if report.probes.get("n"):
        figures.append(("shares", f"Share of each document modality in the top-{report.probes['k']}", _shares(report)))
    return templates.render(
        "audit.html.j2",
        index=report.index,
        verdict=report.verdict,
        facts=_facts(report),
        notes=report.notes,
        gap=_gap(report),
        k=report.probes.get("k"),
        shares=_shares_table(report),
        figures=[{"key": key, "title": title, "png": png} for key, title, png in figures],
        examples=_examples(report),
    )


def _facts(report: AuditReport) -> list[tuple[str, str]]:
    cal = report.calibration
    rows = [
        ("model", f"{report.model.get('name')} (fingerprint {report.model.get('fingerprint')})"),
        ("documents", ", ".join(f"{m} {n}" for m, n in report.corpus["counts"].items())),
        ("index calibration", f"{cal['index'].get('method')} (alpha {cal['index'].get('alpha')})"),
        ("calibrated side", cal["compared"]),
        ("settings", ", ".join(f"{key} {v}" for key, v in report.settings.items())),
    ]
    if report.probes.get("n"):
        rows.append(("probes", f"{report.probes['n']} {report.probes['source']}"))
    return rows


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:+.3f}" if x < 0 else f"{x:.3f}"
    return str(x)


def _gap(report: AuditReport) -> list[tuple[str, ...]]:
    gap = report.gap
    rows: list[tuple[str, ...]] = []
    for pair in gap["raw"]["centroids"]:
        for key, what in (("distance", "centroid distance"), ("cosine", "cosine of centroids")):
            rows.append((f"{what} {pair}", *(_fmt(gap[v]["centroids"][pair][key]) for v in ("raw", "calibrated"))))
    for pair in gap["raw"]["across"]:
        rows.append((f"mean cosine across {pair}", *(_fmt(gap[v]["across"][pair]) for v in ("raw", "calibrated"))))
    for m in gap["raw"]["within"]:
        rows.append((f"mean cosine within {m}", *(_fmt(gap[v]["within"][m]) for v in ("raw", "calibrated"))))
    for pair in gap["raw"]["matched"]:
        for key in ("matched", "unmatched", "difference"):
            rows.append(
                (
                    f"{pair} {key} pairs" if key != "difference" else f"{pair} matched − unmatched",
                    *(_fmt(gap[v]["matched"][pair][key]) for v in ("raw", "calibrated")),
                )
            )
    return rows


def _shares_table(report: AuditReport) -> dict | None:
    p = report.probes
    if not p.get("n"):
        return None
    mods = report.corpus["modalities"]
    rows = [
        (
            name,
            *(f"{p['shares'][name][m]:.1%}" for m in mods),
            _fmt(p["tv"][name]),
            _fmt(p["own_modality_ratio"].get(name)) if name != "corpus" else "1.000",
        )
        for name in ("corpus", "plain", "calibrated")
    ]
    return {"columns": ["", *mods, "TV distance to corpus", "text share ÷ corpus text share"], "rows": rows}


def _examples(report: AuditReport) -> list[tuple[str, ...]]:
    return [
        (ex["probe"], ex["own"] or "", _hits(ex["plain"]), _hits(ex["calibrated"]))
        for ex in report.probes.get("examples") or []
    ]


SHORT: dict[str, str] = MODALITY_TAGS  # the same tags as the demo and the search page


def _hits(hits: list[dict]) -> str:
    return " ".join(f"{h['id']}:{SHORT.get(h['modality'], h['modality'])}" for h in hits)


# -- plots -------------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _projection(report: AuditReport) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    for ax, view in zip(axes, ("raw", "calibrated")):
        data = report.plots["projection"][view]
        points, labels = data["points"], data["labels"]
        for m in dict.fromkeys(labels.tolist()):
            mine = points[labels == m]
            ax.scatter(mine[:, 0], mine[:, 1], s=6, alpha=0.5, color=COLOURS.get(m, "#555"), label=f"{m} ({len(mine)})")
            centre = mine.mean(axis=0)
            ax.scatter([centre[0]], [centre[1]], s=160, marker="X", color=COLOURS.get(m, "#555"), edgecolor="black")
        ex = data["explained"]
        ax.set_title(f"{VIEW_TITLES[view]}")
        ax.set_xlabel(f"PC1 ({ex[0]:.0%} of variance)")
        ax.set_ylabel(f"PC2 ({ex[1]:.0%})")
        ax.legend(loc="best", markerscale=2)
    fig.suptitle("Document parts by modality (X: centroid); PCA fitted per panel")
    return _png(fig)


def _histograms(report: AuditReport) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    bins = np.linspace(-1, 1, 81)
    for row, view in enumerate(("raw", "calibrated")):
        hist = report.plots["histograms"][view]
        groups = (
            ("within / across modalities", [n for n in hist if n.startswith(("within", "across"))]),
            ("matched / unmatched text-media pairs", [n for n in hist if "matched" in n]),
        )
        for col, (title, names) in enumerate(groups):
            ax = axes[row][col]
            for name in names:
                if len(hist[name]):
                    ax.hist(hist[name], bins=bins, histtype="step", density=True, linewidth=1.5, label=name)
            ax.set_title(f"{VIEW_TITLES[view]}: {title}")
            if not any(len(hist[n]) for n in names):
                ax.text(0.5, 0.5, "none in this corpus", ha="center", va="center", transform=ax.transAxes)
            else:
                ax.legend(loc="upper left", fontsize=8)
            ax.set_xlabel("cosine")
    fig.tight_layout()
    return _png(fig)


def _shares(report: AuditReport) -> str:
    import matplotlib.pyplot as plt

    data = report.plots["shares"]
    mods = data["modalities"]
    rows = [r for r in ("corpus", "plain", "calibrated") if r in data]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(rows)
    x = np.arange(len(mods))
    for i, row in enumerate(rows):
        values = [data[row][m] for m in mods]
        bars = ax.bar(x + (i - (len(rows) - 1) / 2) * width, values, width, label=row)
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=8)
    ax.set_xticks(x, mods)
    ax.set_ylabel(f"share of top-{report.probes['k']} hits")
    ax.set_ylim(0, 1.05)
    ax.legend()
    return _png(fig)

"""The audit's HTML page: one self-contained file (plots as base64 PNG drawn by matplotlib, no
script, no network), every user-supplied text (document ids, probe texts, paths) escaped."""

from __future__ import annotations

import base64
import io
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import require

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
    """The page for a report."""
    require("matplotlib", "audit", "the audit page's plots")
    import matplotlib

    matplotlib.use("Agg", force=False)
    figures = [
        ("projection", "2-D projection of document parts, before and after calibration", _projection(report)),
        ("histograms", "Cosine similarity histograms", _histograms(report)),
    ]
    if report.probes.get("n"):
        figures.append(("shares", f"Share of each document modality in the top-{report.probes['k']}", _shares(report)))
    body = [
        f"<h1>Modality-bias audit of {escape(report.index)}</h1>",
        f'<p class="verdict" id="verdict"><strong>Verdict:</strong> {escape(report.verdict)}</p>',
        _facts(report),
    ]
    body += [f'<p class="note">{escape(n)}</p>' for n in report.notes]
    body.append(_numbers(report))
    for key, title, png in figures:
        body.append(
            f'<figure id="fig-{key}"><img src="data:image/png;base64,{png}" alt="{escape(title)}">'
            f"<figcaption>{escape(title)}</figcaption></figure>"
        )
    body.append(_explain(report))
    if report.probes.get("examples"):
        body.append(_examples(report))
    return PAGE.format(title=escape(f"mixsearch audit: {report.index}"), body="\n".join(body))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
.verdict {{ font-size: 1.25em; padding: .6em .9em; background: #fff4d6; border-left: 6px solid #e0a800; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: .25em .6em; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ margin: 1.5em 0; }} figure img {{ max-width: 100%; }}
table.facts td {{ text-align: left; }}
table.examples td {{ text-align: left; vertical-align: top; font-size: .85em; max-width: 22em; }}
.note {{ color: #555; }} code {{ background: #f3f3f3; padding: 0 .2em; }}
</style></head>
<body>
{body}
</body></html>
"""


def _facts(report: AuditReport) -> str:
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
    return _table(["", ""], rows, header=False, css="facts")


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:+.3f}" if x < 0 else f"{x:.3f}"
    return str(x)


def _numbers(report: AuditReport) -> str:
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
    html = "<h2>The gap</h2>" + _table(["", "plain", "calibrated"], rows)
    p = report.probes
    if p.get("n"):
        mods = report.corpus["modalities"]
        share_rows = [
            (
                name,
                *(f"{p['shares'][name][m]:.1%}" for m in mods),
                _fmt(p["tv"][name]),
                _fmt(p["own_modality_ratio"].get(name)) if name != "corpus" else "1.000",
            )
            for name in ("corpus", "plain", "calibrated")
        ]
        html += f"<h2>Top-{p['k']} modality shares</h2>" + _table(
            ["", *mods, "TV distance to corpus", "text share ÷ corpus text share"], share_rows
        )
    return html


def _table(columns: list[str], rows: list[tuple[Any, ...]], *, header: bool = True, css: str = "") -> str:
    head = "<tr>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}">{head}{body}</table>' if css else f"<table>{head}{body}</table>"


def _explain(report: AuditReport) -> str:
    return (
        "<h2>How to read it</h2><ul>"
        "<li><b>Centroid distance</b>: between the mean embeddings of two modalities' document parts "
        "(normalised embeddings; 0 = same centre; Liang et al. 2022 report 0.82 for CLIP ViT-B/32). "
        "Calibration subtracts each "
        "modality's mean, so it should fall near 0 on the calibrated side.</li>"
        "<li><b>Within / across</b>: mean cosine over all pairs of distinct parts of one modality, and over "
        "all pairs of parts of two modalities. A gap shows as within much higher than across.</li>"
        "<li><b>Matched / unmatched</b>: a multimodal document's text and its own image vs another "
        "document's image. The difference is what the model knows; the gap shifts both alike.</li>"
        "<li><b>Top-k shares</b>: which document modalities the probes' top-k hold, pooled over probes, "
        "against the corpus's own shares. TV distance = half the sum of absolute share differences. "
        "Text probes over-favouring text documents (ratio above 1) is same-modality bias.</li>"
        "<li><b>Projection</b>: PCA (numpy SVD) of the sampled document parts, fitted separately on each "
        "side; the paper's Figure 1c for this corpus.</li></ul>"
    )


def _examples(report: AuditReport) -> str:
    rows = []
    for ex in report.probes["examples"]:
        rows.append(
            (
                ex["probe"],
                ex["own"] or "",
                _hits(ex["plain"]),
                _hits(ex["calibrated"]),
            )
        )
    return "<h2>Some probes and their hits</h2><p>T text, I image, IT image+text, A audio, V video.</p>" + _table(
        ["probe", "own document (dropped)", "plain top-k", "calibrated top-k"], rows, css="examples"
    )


SHORT: dict[str, str] = {"text": "T", "image": "I", "multimodal": "IT", "audio": "A", "video": "V"}


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

"""Report: write what ``bench.run_benchmark`` returns as JSON, Markdown, PNG plots and an HTML
case-study page (top-5 of plain vs calibrated side by side, with thumbnails, modality, score,
and the relevant items marked: the GR-CLIP paper's appendix F, for any model).

Files written into the output folder:
  results.json      every number, with the configuration, calibration provenance and machine
  report.md         the tables (setting 3: the MixBench table; settings 1 and 2: the curves as tables)
  plots/*.png       setting 1 NDCG@10-vs-p (the U-curve) and setting 2 NDCG@10-vs-alpha, a line per
                    method; setting 3 a bar per method
  cases.html        the case study; thumbnails are small JPEGs embedded as base64, so the page is
                    one file that opens anywhere
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from pathlib import Path

from .. import templates
from ..errors import require
from . import thresholds
from .cost import cost_table

MAIN_METRIC = "ndcg@10"


def write_report(result: dict, out: str | Path) -> dict[str, Path]:
    """Write every report file for a bench result (``{"runs": [...], "config": ...}``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "report.md", "html": out / "cases.html"}
    paths["json"].write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    paths["markdown"].write_text(markdown(result), encoding="utf-8")
    plots = write_plots(result, out / "plots")
    paths.update({f"plot {i}": p for i, p in enumerate(plots)})
    paths["html"].write_text(case_study_html(result), encoding="utf-8")
    return paths


# -- Markdown -----------------------------------------------------------------------------------


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)


def _metric(row: dict, name: str) -> float | None:
    """A row's metric, None where its method could not apply."""
    return None if row.get("metrics") is None else row["metrics"][name]


def _notes(rows: Sequence[dict]) -> list[str]:
    """One line per (method, note) of rows whose method could not apply or could not change
    anything, with the settings (and grid points) it holds for."""
    where: dict[tuple[str, str], dict[int, list[str]]] = {}
    for r in rows:
        if r.get("note"):
            point = f"{r['p']:g}" if r["setting"] == 1 else f"{r['alpha']:g}" if r["setting"] == 2 else ""
            where.setdefault((r["variant"], r["note"]), {}).setdefault(r["setting"], []).append(point)
    out = []
    for (variant, note), settings in where.items():
        at = [
            f"setting {s}" + (f" ({'p' if s == 1 else 'alpha'} = {', '.join(dict.fromkeys(pts))})" if s != 3 else "")
            for s, pts in settings.items()
        ]
        out.append(f"- `{variant}` ({'; '.join(at)}): {note}")
    return out


def methods_table(rows: Sequence[dict], metric: str = MAIN_METRIC) -> str:
    """Every setting x method in one table: setting 3's number, and settings 1 and 2 averaged over
    their grid (n/a where the method could not apply at some point of it)."""
    what = {1: "mean over p", 2: "mean over alpha", 3: "mixed corpus"}
    rows = [r for r in rows if "pushdown" not in r["variant"]]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    values: dict[tuple[str, str, str], list[float | None]] = {}
    for r in rows:
        key = (r["model"], f"{r['setting']} ({what[r['setting']]})", r["variant"])
        values.setdefault(key, []).append(_metric(r, metric))
    lines = list(dict.fromkeys(k[:2] for k in values))

    def cell(v: list[float | None]) -> float | None:
        return None if not v or any(x is None for x in v) else sum(v) / len(v)  # type: ignore[arg-type]

    return _table(
        ["model", "setting", *variants], [[*k, *[cell(values.get((*k, v), [])) for v in variants]] for k in lines]
    )


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _rows(result: dict) -> list[dict]:
    return [r for run in result["runs"] for r in run["rows"]]


def markdown(result: dict) -> str:
    """``report.md``: the run's tables (setting 3 as in the paper; settings 1 and 2 as curves)."""
    cfg = result.get("config", {})
    env = result.get("environment", {})
    parts = ["# mixsearch bench report", ""]
    parts.append(f"- command: `{cfg.get('command', '')}`")
    parts.append(
        f"- mixsearch {env.get('mixsearch')}, {env.get('cpu')} ({env.get('nproc')} CPUs), RAM {env.get('ram')}, "
        f"torch {env.get('torch')}, CUDA: {env.get('cuda') or 'none'}; {env.get('date')}"
    )
    parts.append(
        f"- settings {cfg.get('settings')}, seed {cfg.get('seed')}, depth {cfg.get('depth')}, "
        f"max queries {cfg.get('max_queries')}, alpha {cfg.get('alpha')}"
    )
    parts.append(
        "- metrics: trec_eval semantics (pytrec_eval): ideal DCG over all judged documents. "
        "Columns marked *[paper]* are the GR-CLIP paper's variant (sklearn `ndcg_score` on the retrieved "
        "top-k only, so relevant documents not retrieved are ignored): comparable with the paper's tables, "
        "never with trec_eval figures."
    )
    for run in result["runs"]:
        ds = run["dataset"]
        parts += ["", f"## {ds['name']} ({ds.get('kind')})", ""]
        parts.append(f"- source: `{ds.get('path')}`, revision `{ds.get('revision')}`; rule: {ds.get('rule')}")
        parts.append(f"- counts: {json.dumps(ds.get('counts'))}")
        parts.append(f"- calibration: {run['calibration']['description']}")
        if run["calibration"]["plan"] == "test":
            parts.append("- **WARNING: the calibration means were fitted on the test data (transductive).**")
        for model, info in run["models"].items():
            c = info["calibration"]
            parts.append(
                f"- `{model}` (fingerprint {info['info']['fingerprint']}): means from {c['source']}; "
                f"items per mean {json.dumps(c.get('counts'))}"
                + (f"; {c['screenshot_image_mean']}" if c.get("screenshot_image_mean") else "")
            )
        parts.append(f"- timings (s): {json.dumps(run['timings'])}")
        cost = cost_table(run["models"])
        if cost:
            parts += ["", "### Cost per item", "", *cost]
        rows = run["rows"]
        s3 = [r for r in rows if r["setting"] == 3]
        if len({r.get("method") for r in rows}) > 2:
            parts += ["", f"### Calibration methods, {MAIN_METRIC} (trec_eval)", "", methods_table(rows)]
            parts += ["", *_notes(rows), "", "README 'Calibration methods' says what each method does."]
        if s3:
            parts += [
                "",
                "### Setting 3: mixed corpus",
                "",
                f"Corpus: {s3[0].get('corpus_rule')}, {json.dumps(s3[0]['corpus'])}; "
                f"{s3[0]['queries']} judged queries.",
                "",
            ]
            metrics = list(next((r["metrics"] for r in s3 if r.get("metrics")), {}))
            parts.append(
                _table(
                    ["model", "variant", *metrics],
                    [[r["model"], r["variant"], *[_metric(r, m) for m in metrics]] for r in s3],
                )
            )
            parts += ["", *_notes(s3)] if _notes(s3) else []
        for setting, key, title in (
            (1, "p", "Setting 1: text documents replaced with probability p"),
            (2, "alpha", "Setting 2: image+text documents, text weight alpha"),
        ):
            sel = [r for r in rows if r["setting"] == setting]
            if not sel:
                continue
            extra = f" (replacement: {sel[0].get('replace')})" if setting == 1 else ""
            parts += ["", f"### {title}{extra}", ""]
            for model in dict.fromkeys(r["model"] for r in sel):
                mine = [r for r in sel if r["model"] == model]
                variants = list(dict.fromkeys(r["variant"] for r in mine))
                grid = list(dict.fromkeys(r[key] for r in mine))
                table = {(r[key], r["variant"]): _metric(r, MAIN_METRIC) for r in mine}
                parts += [f"`{model}`, {MAIN_METRIC} (trec_eval; [paper] variant in results.json):", ""]
                parts.append(_table([key, *variants], [[f"{g:g}", *[table[(g, v)] for v in variants]] for g in grid]))
                parts += ["", *_notes(mine), ""] if _notes(mine) else [""]
        parts += thresholds.markdown(run)
    if any(run.get("problems") for run in result["runs"]):
        parts += ["", "## Problems (first 20 per dataset)", ""]
        for run in result["runs"]:
            parts += [f"- {run['dataset']['name']}: {p}" for p in run.get("problems", [])[:20]]
    parts += ["", "Case study: `cases.html`. Every number: `results.json`.", ""]
    return "\n".join(parts)


# -- plots ----------------------------------------------------------------------------------------


def write_plots(result: dict, folder: Path) -> list[Path]:
    """The setting 1 (U-curve) and setting 2 (alpha) plots as PNG files; returns their paths."""
    matplotlib = require("matplotlib", "bench", "bench's plots")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    rows = _rows(result)
    for setting, key, xlabel, stem in (
        (1, "p", "p (fraction of text documents replaced)", "u_curve"),
        (2, "alpha", "alpha (text weight of image+text documents)", "alpha_curve"),
    ):
        sel = [r for r in rows if r["setting"] == setting]
        for dataset in dict.fromkeys(r["dataset"] for r in sel):
            for model in dict.fromkeys(r["model"] for r in sel if r["dataset"] == dataset):
                mine = [r for r in sel if r["dataset"] == dataset and r["model"] == model]
                fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
                for variant in dict.fromkeys(r["variant"] for r in mine):
                    pts = sorted(
                        (r[key], r["metrics"][MAIN_METRIC]) for r in mine if r["variant"] == variant and r["metrics"]
                    )
                    if not pts:  # the method could not apply (a note in report.md says why)
                        continue
                    style = "--" if "pushdown" in variant else "-"
                    ax.plot([x for x, _ in pts], [y for _, y in pts], style, marker="o", label=variant)
                title = f"{dataset} — {Path(model).name}"
                if setting == 1:
                    title += f" ({mine[0].get('replace')})"
                ax.set(xlabel=xlabel, ylabel=f"{MAIN_METRIC} (trec_eval)", title=title, ylim=(0, None))
                ax.grid(alpha=0.3)
                ax.legend()
                fig.tight_layout()
                path = folder / f"{stem}_{_slug(dataset)}_{_slug(Path(model).name)}.png"
                fig.savefig(path)
                plt.close(fig)
                written.append(path)
    for dataset in dict.fromkeys(r["dataset"] for r in rows if r["setting"] == 3):
        written.append(_setting3_bars(plt, [r for r in rows if r["setting"] == 3 and r["dataset"] == dataset], folder))
    return written + thresholds.write_plots(result, folder)


def _setting3_bars(plt, rows: list[dict], folder: Path) -> Path:
    """Setting 3: one bar per method (variant), grouped by model; n/a bars are left out and labelled."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    width = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(variants) * len(models)), 4), dpi=100)
    for vi, variant in enumerate(variants):
        for mi, model in enumerate(models):
            row = next((r for r in rows if r["model"] == model and r["variant"] == variant), None)
            x = mi + (vi - (len(variants) - 1) / 2) * width
            value = None if row is None else _metric(row, MAIN_METRIC)
            if value is None:
                ax.text(x, 0.01, "n/a", ha="center", va="bottom", fontsize=8, rotation=90)
                continue
            ax.bar(x, value, width, color=f"C{vi}", label=variant if mi == 0 else None)
            ax.text(x, value, f"{value:.3f}", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(range(len(models)), [Path(m).name for m in models])
    ax.set(ylabel=f"{MAIN_METRIC} (trec_eval)", title=f"{rows[0]['dataset']} — setting 3 (mixed corpus)")
    ax.set_ylim(0, 1.1 * max((_metric(r, MAIN_METRIC) or 0) for r in rows) + 0.05)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = folder / f"setting3_{_slug(rows[0]['dataset'])}_methods.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))[-60:]


# -- HTML case study --------------------------------------------------------------------------


def thumbnail(path: str | Path | None, size: int = 112) -> str | None:
    """A small JPEG of an image file as a data: URI (None when it cannot be read)."""
    if not path:
        return None
    try:
        from PIL import Image

        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80)
    except OSError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def case_study_html(result: dict) -> str:
    """``cases.html``: plain vs calibrated top-5 for the case-study queries, one file
    (``templates/cases.html.j2``; Jinja2 escapes every id, text and path)."""
    cases = [
        {**case, "calibration": run["models"].get(case["model"], {}).get("calibration", {}).get("source")}
        for run in result["runs"]
        for case in run.get("cases", [])
    ]
    command = result.get("config", {}).get("command", "")
    return templates.render("cases.html.j2", command=str(command), cases=cases, thumbnail=thumbnail)

"""The ``mixsearch`` command: a thin face over the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .calibrate import CalibrationError
from .encode import ModelError
from .index import VectorIndexError
from .ingest import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Mixed modality search with modality-gap calibration (GR-CLIP).")

DEFAULT_MODEL = "mixclip-flickr8k"  # bundled: works offline; pass --model for any HF id or folder
USER_ERRORS = (InputError, CalibrationError, ModelError, VectorIndexError, FileNotFoundError)


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _say(message: str) -> None:
    typer.echo(message, err=True)


@app.command()
def calibrate(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Hugging Face id, local folder or bundled name."),
    queries: Optional[Path] = typer.Option(None, help="Queries: text file (one per line) or JSON Lines with 'text'."),
    texts: Optional[Path] = typer.Option(None, help="Document texts: text file or JSON Lines with 'text'."),
    images: Optional[Path] = typer.Option(None, help="Document images: a folder, or JSON Lines with 'image'."),
    audio: Optional[Path] = typer.Option(None, help="Document audio: a folder, or JSON Lines with 'audio'."),
    out: Path = typer.Option(..., "--out", "-o", help="Calibration file to write (.safetensors)."),
    method: str = typer.Option("mean", help="'mean' (GR-CLIP) or 'none' (plain CLIP)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda if available)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Embedding cache (default ~/.cache/mixsearch)."),
):
    """Fit per-modality means on calibration files and save them."""
    from . import fit_calibration, load_encoder, save_calibration

    try:
        encoder = load_encoder(model, device=device)
        cal = fit_calibration(encoder, queries, texts, images, audio=audio, method=method,
                              cache_dir=cache_dir, report=lambda p: _say(f"skipped: {p}"), progress=True)
        save_calibration(cal, out, cal.provenance)
    except USER_ERRORS as err:
        _fail(err)
    counts = ", ".join(f"{role}: {n}" for role, n in cal.counts_.items())
    _say(f"wrote {out} ({cal.method}; items per mean: {counts or 'none'})")


@app.command()
def index(
    corpus: Path = typer.Argument(..., help="JSON Lines (id, text, image, ...) or a folder of files."),
    out: Path = typer.Option(..., "--out", "-o", help="Index folder to write."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Hugging Face id, local folder or bundled name."),
    calibration: Optional[str] = typer.Option(
        None, help="Calibration file; 'shipped' for the means bundled with the model; 'none' for plain CLIP. "
                   "Default: fit document means on this corpus."),
    alpha: float = typer.Option(0.5, help="Weight of the text part of image+text documents."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, ... (default: cuda if available)."),
    batch_size: Optional[int] = typer.Option(None, help="Items per encoder batch."),
    cache_dir: Optional[Path] = typer.Option(None, help="Embedding cache (default ~/.cache/mixsearch)."),
):
    """Encode, calibrate and index a corpus. Rerun after an interruption: it resumes."""
    from . import build_index, load_encoder

    try:
        calibration = _shipped(model) if calibration == "shipped" else calibration
        encoder = load_encoder(model, device=device, batch_size=batch_size)
        _, report = build_index(corpus, out, encoder, calibration=calibration, alpha=alpha,
                                cache_dir=cache_dir, progress=True, log=_say)
    except USER_ERRORS as err:
        _fail(err)
    _say(report.summary())
    _say(f"index written to {out}; search it with: mixsearch search {out} \"your query\"")


def _shipped(model: str) -> str:
    from .calibration_file import shipped_calibration

    path = shipped_calibration(model)
    if path is None:
        raise InputError(f"model {model!r} ships no calibration file; fit one with 'mixsearch calibrate'")
    return str(path)


@app.command()
def search(
    index_dir: Path = typer.Argument(..., help="An index folder made by 'mixsearch index'."),
    query: str = typer.Argument(..., help="Query text, or the path of a query image."),
    k: int = typer.Option(10, "-k", help="Number of results."),
    modality: Optional[str] = typer.Option(None, help="Only return text, image or multimodal documents."),
    image: Optional[Path] = typer.Option(None, help="An image to pair with the query text."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines output for machines."),
    device: Optional[str] = typer.Option(None),
):
    """Search an index with a text or image query."""
    from . import open_index

    try:
        hits = open_index(index_dir, device=device).search(query, k=k, modality=modality, image=image)
    except USER_ERRORS as err:
        _fail(err)
    if as_json:
        for hit in hits:
            typer.echo(json.dumps(hit.to_dict(), ensure_ascii=False))
        return
    if not hits:
        _say("no results")
    for hit in hits:
        typer.echo(f"{hit.rank:>3}  {hit.score:+.4f}  {hit.modality:<10}  {hit.id}  {_preview(hit)}")


def _preview(hit, width: int = 80) -> str:
    parts = []
    if hit.image:
        parts.append(f"[{hit.image}]")
    if hit.text:
        text = " ".join(hit.text.split())
        parts.append(text if len(text) <= width else text[: width - 1] + "…")
    return " ".join(parts)


@app.command()
def recalibrate(
    index_dir: Path = typer.Argument(..., help="An index folder."),
    calibration: Optional[str] = typer.Option(None, help="Calibration file, 'none', or omit to fit on the corpus."),
    alpha: Optional[float] = typer.Option(None, help="New weight of the text part (default: keep)."),
):
    """Apply another calibration or alpha to an index without re-encoding."""
    from . import open_index

    try:
        idx = open_index(index_dir).recalibrate(calibration, alpha)
    except USER_ERRORS as err:
        _fail(err)
    cal = idx.manifest["calibration"]
    _say(f"{index_dir}: calibration {cal['method']} from {cal['source']}, alpha {cal['alpha']}")


@app.command()
def info(index_dir: Path = typer.Argument(..., help="An index folder.")):
    """Show what an index holds: model, calibration, documents, what was skipped."""
    from . import open_index

    try:
        manifest = open_index(index_dir).manifest
    except USER_ERRORS as err:
        _fail(err)
    typer.echo(json.dumps(manifest, indent=2))


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"{what}: expected comma-separated numbers, got {text!r}") from None


@app.command()
def bench(
    dataset: str = typer.Argument(..., help="MixBench (hub id or local copy), a BEIR folder, or a captions folder/file."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder: results.json, report.md, plots/, cases.html."),
    kind: str = typer.Option("auto", help="mixbench, beir, captions, or auto (detected from the files)."),
    subset: Optional[list[str]] = typer.Option(None, help="MixBench config (MSCOCO, Google_WIT, VisualNews, OVEN); repeat."),
    split: Optional[str] = typer.Option(None, help="BEIR qrels split (default test); captions file (default dev.jsonl)."),
    revision: Optional[str] = typer.Option(None, help="Dataset revision (hub datasets)."),
    model: list[str] = typer.Option([DEFAULT_MODEL], "--model", "-m", help="Model(s) to compare; repeat (e.g. openai/clip-vit-base-patch32)."),
    calibration: Optional[list[Path]] = typer.Option(None, help="Calibration file(s), one per model, in --model order."),
    calibrate_on: str = typer.Option("auto", help="Where GR means are fitted: auto, split:NAME, subsets:A,B, or test "
                                                  "(transductive, labelled so). See docs/evaluation.md."),
    settings: str = typer.Option("3", help="Settings to run, e.g. 1,2,3."),
    p_grid: str = typer.Option("0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1", help="Setting 1 replacement probabilities."),
    alpha_grid: str = typer.Option("0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1", help="Setting 2 text weights."),
    replace: str = typer.Option("image", help="Setting 1: replace text documents by their 'image' or a 'screenshot'."),
    alpha: float = typer.Option(0.5, help="Text weight of image+text documents in settings 1 and 3."),
    depth: int = typer.Option(100, help="Results retrieved per query."),
    max_queries: Optional[int] = typer.Option(None, help="Evaluate a seeded sample of this many queries."),
    max_calibration: int = typer.Option(5000, help="Most items per calibration mean (seeded sample)."),
    seed: int = typer.Option(0, help="Seed of every sampled choice (captions rule, replacement, mix, samples)."),
    case_queries: Optional[str] = typer.Option(None, help="Query ids for the case study, comma-separated."),
    cases: int = typer.Option(5, help="Queries in the case study when --case-queries is not given."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, ... (default: cuda if available)."),
    batch_size: Optional[int] = typer.Option(None, help="Items per encoder batch."),
    cache_dir: Optional[Path] = typer.Option(None, help="Embedding cache (default ~/.cache/mixsearch)."),
    keep_work: bool = typer.Option(False, help="Keep the per-setting index folders under OUT/work."),
):
    """Benchmark plain vs GR-calibrated search: MixBench, BEIR or caption datasets, settings 1-3."""
    from .bench import BenchConfig, BenchError, bench as run_bench

    try:
        cfg = BenchConfig(
            settings=tuple(int(s) for s in settings.split(",") if s.strip()), p_grid=_floats(p_grid, "--p-grid"),
            alpha_grid=_floats(alpha_grid, "--alpha-grid"), replace=replace, alpha=alpha, depth=depth,
            max_queries=max_queries, max_calibration=max_calibration, seed=seed,
            case_queries=tuple(q for q in (case_queries or "").split(",") if q), n_cases=cases,
            device=device, batch_size=batch_size, cache_dir=cache_dir)
        if set(cfg.settings) - {1, 2, 3}:
            raise BenchError(f"--settings: expected 1, 2 and/or 3, got {settings!r}")
        _, paths = run_bench(dataset, model, out, kind=kind, subsets=subset or [], split=split, revision=revision,
                             calibration_files=calibration or [], calibrate_on=calibrate_on, config=cfg,
                             command="mixsearch bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "mixsearch bench",
                             keep_work=keep_work, log=_say)
    except (*USER_ERRORS, BenchError) as err:
        _fail(err)
    _say(f"report written to {out}: " + ", ".join(p.name for p in paths.values() if p.parent == out))
    typer.echo(paths["markdown"].read_text(encoding="utf-8"))


@app.command()
def demo(
    out: Path = typer.Option(Path("mixsearch-demo"), "--out", "-o", help="Where the demo's corpus and indexes go."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="An image-text model."),
):
    """Offline demo: a mixed corpus of bundled Flickr8k photos, searched plain vs calibrated."""
    from .demo import run_demo

    try:
        run_demo(model=model, out=out, log=typer.echo)
    except USER_ERRORS as err:
        _fail(err)


def main() -> None:  # python -m mixsearch
    app(prog_name="mixsearch")


if __name__ == "__main__":
    sys.exit(main())

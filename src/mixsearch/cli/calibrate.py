"""``mixsearch calibrate``: fit per-modality means on calibration files and save them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import DEFAULT_MODEL, command, say


@command
def calibrate(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Hugging Face id, local folder or bundled name."),
    queries: Optional[Path] = typer.Option(None, help="Queries: text file (one per line) or JSON Lines with 'text'."),
    texts: Optional[Path] = typer.Option(None, help="Document texts: text file or JSON Lines with 'text'."),
    images: Optional[Path] = typer.Option(None, help="Document images: a folder, or JSON Lines with 'image'."),
    audio: Optional[Path] = typer.Option(None, help="Document audio: a folder, or JSON Lines with 'audio'."),
    video: Optional[Path] = typer.Option(None, help="Document video: a folder, or JSON Lines with 'video'."),
    out: Path = typer.Option(..., "--out", "-o", help="Calibration file to write (.safetensors)."),
    method: str = typer.Option("mean", help="'mean' (GR-CLIP) or 'none' (plain CLIP)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda if available)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Embedding cache (default ~/.cache/mixsearch)."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for encoding (default: all cores)."),
    runtime: str = typer.Option(
        "auto", help="Transformers models: auto (ONNX Runtime for long runs when installed), torch or onnx."
    ),
    video_frames: Optional[int] = typer.Option(
        None, "--video-frames", help="Frames sampled per video, evenly spread (default 8; X-CLIP takes its own)."
    ),
) -> None:
    """Fit per-modality means on calibration files and save them."""
    from .. import Calibrator, fit_calibration, load_encoder, save_calibration
    from ..encoders.base import set_threads

    Calibrator(method)  # an unknown method is a usage error, before the model loads
    sources = {"query": queries, "text": texts, "image": images, "audio": audio, "video": video}
    set_threads(threads)
    encoder = load_encoder(model, device=device, runtime=runtime, video_frames=video_frames)
    cal = fit_calibration(
        encoder,
        {role: path for role, path in sources.items() if path is not None},
        method=method,
        cache_dir=cache_dir,
        report=lambda p: say(f"skipped: {p}"),
    )
    save_calibration(cal, out)
    counts = ", ".join(f"{role}: {n}" for role, n in cal.counts_.items())
    say(f"wrote {out} ({cal.method}; items per mean: {counts or 'none'})")

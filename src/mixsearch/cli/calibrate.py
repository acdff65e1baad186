"""``mixsearch calibrate``: fit per-modality means on calibration files and save them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import DEFAULT_MODEL, CacheDir, Device, Runtime, Threads, VideoFrames, command, say


@command
def calibrate(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Hugging Face id, local folder or bundled name."),
    queries: Optional[Path] = typer.Option(None, help="Queries: text file (one per line) or JSON Lines with 'text'."),
    texts: Optional[Path] = typer.Option(None, help="Document texts: text file or JSON Lines with 'text'."),
    images: Optional[Path] = typer.Option(None, help="Document images: a folder, or JSON Lines with 'image'."),
    audio: Optional[Path] = typer.Option(None, help="Document audio: a folder, or JSON Lines with 'audio'."),
    video: Optional[Path] = typer.Option(None, help="Document video: a folder, or JSON Lines with 'video'."),
    out: Path = typer.Option(..., "--out", "-o", help="Calibration file to write (.safetensors)."),
    method: str = typer.Option(
        "mean",
        help="'mean' (GR-CLIP), 'none' (plain CLIP), 'standardize' (I0T), 'shift' (Mind the Gap), "
        "'zscore' or 'rrf' (score-level); see README 'Calibration methods'.",
    ),
    shift_lambda: float = typer.Option(
        1.0, "--lambda", help="Method 'shift': how far along the gap (1: centroids meet)."
    ),
    rrf_k: float = typer.Option(60.0, help="Method 'rrf': the reciprocal-rank constant k."),
    device: Device = None,
    cache_dir: CacheDir = None,
    threads: Threads = None,
    runtime: Runtime = "auto",
    video_frames: VideoFrames = None,
) -> None:
    """Fit per-modality means on calibration files and save them."""
    from .. import Calibrator, fit_calibration, load_encoder, save_calibration
    from ..encoders.base import set_threads
    from ..errors import CalibrationError
    from ..ingest import check_items

    # bad values and missing files fail here, before torch and the model load
    Calibrator(method, shift_lambda=shift_lambda, rrf_k=rrf_k).check_params()
    sources = {"query": queries, "text": texts, "image": images, "audio": audio, "video": video}
    if method != "none":  # method none fits nothing and reads no file
        for role, path in sources.items():
            if path is not None:
                check_items(path, "text" if role == "query" else role)
        if all(path is None for path in sources.values()):
            raise CalibrationError("nothing to fit: give --queries, --texts, --images, --audio and/or --video")
    set_threads(threads)
    encoder = load_encoder(model, device=device, runtime=runtime, video_frames=video_frames, cache_dir=cache_dir)
    cal = fit_calibration(
        encoder,
        {role: path for role, path in sources.items() if path is not None},
        method=method,
        shift_lambda=shift_lambda,
        rrf_k=rrf_k,
        cache_dir=cache_dir,
        report=lambda p: say(f"skipped: {p}"),
    )
    save_calibration(cal, out)
    counts = ", ".join(f"{role}: {n}" for role, n in cal.counts_.items())
    say(f"wrote {out} ({cal.method}; items per mean: {counts or 'none'})")

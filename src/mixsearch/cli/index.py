"""``mixsearch index``: encode, calibrate and index a corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import (
    DEFAULT_MODEL,
    BatchSize,
    CacheDir,
    Device,
    Runtime,
    Threads,
    VideoFrames,
    command,
    parse_index_options,
    say,
)


@command
def index(
    corpus: Path = typer.Argument(..., help="JSON Lines (id, text, image, ...) or a folder of files."),
    out: Path = typer.Option(..., "--out", "-o", help="Index folder to write."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Hugging Face id, local folder or bundled name."),
    calibration: Optional[str] = typer.Option(
        None,
        help="Calibration file; 'shipped' for the means bundled with the model; 'none' for plain CLIP. "
        "Default: fit document means on this corpus.",
    ),
    alpha: float = typer.Option(0.5, help="Weight of the text part of image+text documents."),
    method: Optional[str] = typer.Option(
        None,
        help="Calibration method: none, mean, standardize, shift, zscore, rrf (README 'Calibration methods'). "
        "Default: mean when fitting on this corpus, else the calibration file's own.",
    ),
    index_kind: str = typer.Option("exact", "--index", help="Vector index kind: exact (default) or hnsw."),
    index_option: list[str] = typer.Option(
        [], "--index-option", help="A setting of the index kind, NAME=VALUE (repeatable), e.g. M=32."
    ),
    device: Device = None,
    batch_size: BatchSize = None,
    cache_dir: CacheDir = None,
    threads: Threads = None,
    runtime: Runtime = "auto",
    video_frames: VideoFrames = None,
) -> None:
    """Encode, calibrate and index a corpus. Rerun after an interruption: it resumes."""
    from .. import Calibrator, build_index, load_encoder
    from ..calibration import shipped_calibration
    from ..encoders.base import set_threads
    from ..errors import InputError

    Calibrator(method or "mean", alpha=alpha)  # an impossible alpha or method is a usage error, before anything loads
    if calibration == "shipped":
        shipped = shipped_calibration(model)
        if shipped is None:
            raise InputError(f"model {model!r} ships no calibration file; fit one with 'mixsearch calibrate'")
        calibration = str(shipped)
    set_threads(threads)
    encoder = load_encoder(model, device=device, batch_size=batch_size, runtime=runtime, video_frames=video_frames)
    options = parse_index_options(index_option)
    _, report = build_index(
        corpus,
        out,
        encoder,
        calibration=calibration,
        alpha=alpha,
        method=method,
        kind=index_kind,
        index_options=options,
        cache_dir=cache_dir,
    )
    say(report.summary())
    say(f'index written to {out}; search it with: mixsearch search {out} "your query"')

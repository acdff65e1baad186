"""``mixsearch recalibrate``: apply another calibration or alpha without re-encoding."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import command, say


@command
def recalibrate(
    index_dir: Path = typer.Argument(..., help="An index folder."),
    calibration: Optional[str] = typer.Option(None, help="Calibration file, 'none', or omit to fit on the corpus."),
    alpha: Optional[float] = typer.Option(None, help="New weight of the text part (default: keep)."),
) -> None:
    """Apply another calibration or alpha to an index without re-encoding."""
    from .. import Calibrator, open_index

    if alpha is not None:
        Calibrator(alpha=alpha)  # an impossible alpha is a usage error
    idx = open_index(index_dir).recalibrate(calibration, alpha)
    cal = idx.manifest["calibration"]
    say(f"{index_dir}: calibration {cal['method']} from {cal['source']}, alpha {cal['alpha']}")

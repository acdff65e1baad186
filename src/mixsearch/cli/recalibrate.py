"""``mixsearch recalibrate``: apply another calibration or alpha without re-encoding."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import command, say


@command
def recalibrate(
    index_dir: Path = typer.Argument(..., help="An index folder."),
    calibration: Optional[str] = typer.Option(
        None,
        help="A calibration file, 'none' (plain CLIP) or 'corpus' (fit document means on the index's own "
        "documents). Default: keep the index's calibration (and change only --alpha).",
    ),
    alpha: Optional[float] = typer.Option(None, help="New weight of the text part (default: keep)."),
    method: Optional[str] = typer.Option(
        None,
        help="Calibration method to apply (none, mean, standardize, shift, zscore, rrf); default: the "
        "calibration's own (mean when fitting on the corpus).",
    ),
) -> None:
    """Apply another calibration or alpha to an index without re-encoding."""
    from .. import Calibrator, open_index
    from ..errors import UsageError

    if calibration is None and alpha is None and method is None:
        raise UsageError("nothing to change: give --calibration (a file, none or corpus), --alpha and/or --method")
    Calibrator(method or "mean", alpha=0.5 if alpha is None else alpha).check_params()  # bad values are usage errors
    index = open_index(index_dir)
    idx = index.recalibrate(index.calibrator if calibration is None else calibration, alpha, method=method)
    cal = idx.manifest.calibration
    say(f"{index_dir}: calibration {cal.method} from {cal.source}, alpha {cal.alpha}")

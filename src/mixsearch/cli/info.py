"""``mixsearch info``: what an index holds."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._app import command


@command
def info(index_dir: Path = typer.Argument(..., help="An index folder.")) -> None:
    """Show what an index holds: model, calibration, documents, what was skipped."""
    from .. import open_index

    typer.echo(json.dumps(open_index(index_dir).manifest, indent=2, ensure_ascii=False))

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

    index = open_index(index_dir)
    where = getattr(index.index, "info", None)  # a kind that lives elsewhere says where (milvus: uri, collection)
    manifest = index.manifest.to_dict() | ({} if where is None else {"backend": where()})
    typer.echo(json.dumps(manifest, indent=2, ensure_ascii=False))

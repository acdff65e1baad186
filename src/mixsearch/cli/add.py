"""``mixsearch add``: add documents to an index in place (new ids added, existing ids replaced)."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import CacheDir, command, say


@command
def add(
    index_dir: Path = typer.Argument(..., help="An index folder made by 'mixsearch index'."),
    corpus: Path = typer.Argument(..., help="JSON Lines (id, text, image, ...) or a folder of files."),
    cache_dir: CacheDir = None,
) -> None:
    """Add documents to an index: encoded with the index's own model and fused with its existing
    calibration (kept as it is; refit with 'mixsearch recalibrate'). One atomic change."""
    from .. import open_index
    from ..ingest import check_corpus

    check_corpus(corpus)  # before the index's model loads
    report = open_index(index_dir).add(corpus, cache_dir=cache_dir)
    say(report.summary())

"""``mixsearch demo``: the offline demo."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import command

DEMO_MODEL = "mixclip-gap"  # mixsearch.demo.DEFAULT_MODEL, without importing the demo at start-up


@command
def demo(
    out: Path = typer.Option(Path("mixsearch-demo"), "--out", "-o", help="Where the demo's corpus and indexes go."),
    model: str = typer.Option(
        DEMO_MODEL, "--model", "-m", help="An image-text model (the default has CLIP's modality gap)."
    ),
) -> None:
    """Offline demo: a mixed corpus of bundled Flickr8k photos, searched plain vs calibrated."""
    from ..demo import run_demo

    typer.echo(run_demo(model=model, out=out).text)

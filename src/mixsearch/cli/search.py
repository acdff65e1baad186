"""``mixsearch search``: search an index with a text, an image, or both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError
from ..ingest import media_kind
from ._app import command, say


@command
def search(
    index_dir: Path = typer.Argument(..., help="An index folder made by 'mixsearch index'."),
    query: Optional[str] = typer.Argument(
        None, help="Query text; or the path of a query image (a name ending .jpg, .png, ... is taken as an image)."
    ),
    text: Optional[str] = typer.Option(None, "--text", help="Query text, taken as text whatever it looks like."),
    image: Optional[Path] = typer.Option(None, "--image", help="Query image (alone, or paired with the query text)."),
    k: int = typer.Option(10, "-k", help="Number of results."),
    modality: Optional[str] = typer.Option(None, help="Only return text, image, audio, video or multimodal documents."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines output for machines."),
    device: Optional[str] = typer.Option(None),
) -> None:
    """Search an index with a text or image query (or both: an image+text query)."""
    from .. import open_index

    if query is not None and text is not None:
        raise UsageError("give the query text once: as the argument or with --text")
    if query is not None and media_kind(query) == "image":
        if image is not None:
            raise UsageError(f"{query!r} looks like an image path and --image is given too; use --text for text")
        image, query = Path(query), None
    text = query if text is None else text
    if image is not None and not image.is_file():
        raise UsageError(f"{image}: no such image file (to search for this as text, use --text)")
    if text is None and image is None:
        raise UsageError("give a query: text, or an image path (--image)")
    hits = open_index(index_dir, device=device).search(text, image, k=k, modality=modality)
    if as_json:
        for hit in hits:
            typer.echo(json.dumps(hit.to_dict(), ensure_ascii=False))
        return
    if not hits:
        say("no results")
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

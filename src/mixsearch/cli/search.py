"""``mixsearch search``: search an index with a text, an image, an audio clip or a video, or a text with one."""

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
    audio: Optional[Path] = typer.Option(None, "--audio", help="Query audio clip (models with an audio tower: CLAP)."),
    video: Optional[Path] = typer.Option(None, "--video", help="Query video (models with an image or video tower)."),
    k: int = typer.Option(10, "-k", help="Number of results."),
    modality: Optional[str] = typer.Option(None, help="Only return text, image, audio, video or multimodal documents."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines output for machines."),
    device: Optional[str] = typer.Option(None),
) -> None:
    """Search an index with a text, image, audio or video query (or a text with one of them)."""
    from .. import open_index

    if query is not None and text is not None:
        raise UsageError("give the query text once: as the argument or with --text")
    if query is not None and media_kind(query) == "image":
        if image is not None:
            raise UsageError(f"{query!r} looks like an image path and --image is given too; use --text for text")
        image, query = Path(query), None
    if query is not None and media_kind(query) in ("audio", "video"):  # a clip's path: that query
        if image is not None or audio is not None or video is not None:
            raise UsageError(f"{query!r} looks like a media path and a media option is given too; use --text for text")
        audio, video = (Path(query), None) if media_kind(query) == "audio" else (None, Path(query))
        query = None
    for flag, path in (("audio", audio), ("video", video)):
        if path is not None and not path.is_file():
            raise UsageError(f"{path}: no such {flag} file (to search for this as text, use --text)")
    text = query if text is None else text
    if image is not None and not image.is_file():
        raise UsageError(f"{image}: no such image file (to search for this as text, use --text)")
    if text is None and image is None and audio is None and video is None:
        raise UsageError("give a query: text, or an image path (--image), an audio clip (--audio) or a video (--video)")
    hits = open_index(index_dir, device=device).search(text, image, audio=audio, video=video, k=k, modality=modality)
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
    parts += [f"[{media}]" for media in (hit.image, hit.audio, hit.video) if media]
    if hit.text:
        text = " ".join(hit.text.split())
        parts.append(text if len(text) <= width else text[: width - 1] + "…")
    return " ".join(parts)

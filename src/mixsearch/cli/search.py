"""``mixsearch search``: search an index with a text, an image, an audio clip or a video, or a text with one."""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError
from ..ingest import media_kind
from ..types import Hit
from ._app import command, say

HIT_FIELDS = {f.name for f in fields(Hit)}


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
    where: Optional[str] = typer.Option(
        None,
        "--where",
        help="Only documents whose metadata pass this SQL condition, e.g. \"year >= 2020 AND source = 'wiki'\".",
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines output for machines."),
    calibration: str = typer.Option(
        "calibrated",
        help="'calibrated': the index as stored; 'none': plain CLIP from the same stored embeddings "
        "('plain' is taken too).",
    ),
    url: Optional[str] = typer.Option(
        None,
        envvar="MIXSEARCH_URL",
        show_envvar=True,
        help="Ask a running 'mixsearch serve' at this address instead of loading the model here "
        "(INDEX_DIR then names the served index by its folder name).",
    ),
    token: Optional[str] = typer.Option(None, envvar="MIXSEARCH_TOKEN", help="The server's access token (with --url)."),
    device: Optional[str] = typer.Option(None),
    threads: int = typer.Option(1, help="CPU threads for encoding the query (one query: 1 is fastest on busy cores)."),
    runtime: str = typer.Option("auto", help="Transformers models: auto (ONNX Runtime once exported), torch or onnx."),
    min_relevance: Optional[float] = typer.Option(
        None,
        "--min-relevance",
        help="Drop hits whose estimated relevance (0-1, the calibration's relevance map; see "
        "'mixsearch fit-relevance') is below this; fewer than k may come back.",
    ),
) -> None:
    """Search an index with a text, image, audio or video query (or a text with one of them)."""

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
    calibration = {"plain": "none"}.get(calibration, calibration)  # plain CLIP's old name
    if calibration not in ("calibrated", "none"):
        raise UsageError(f"--calibration must be 'calibrated' or 'none' (plain CLIP), got {calibration!r}")
    from ..calibration.relevance import check_min_relevance

    check_min_relevance(min_relevance)
    if url:
        if audio is not None or video is not None:
            raise UsageError("a server answers text and image queries; search audio or video here, without --url")
        records = _ask_server(url, token, index_dir, text, image, k, modality, calibration, where, min_relevance)
    else:
        found = _search_here(
            index_dir,
            text,
            image,
            audio,
            video,
            k,
            modality,
            calibration,
            device,
            runtime,
            where,
            min_relevance,
            threads,
        )
        records = [hit.to_dict() for hit in found]
    if as_json:
        for record in records:
            typer.echo(json.dumps(record, ensure_ascii=False))
        return
    hits = [Hit(**{key: v for key, v in r.items() if key in HIT_FIELDS}) for r in records]
    if not hits:
        say("no results")
    for hit in hits:
        relevance = "" if hit.relevance is None else f"  rel {hit.relevance:.2f}"
        fields = f"  ({_metadata(hit.metadata)})" if hit.metadata else ""  # one line a hit: grep and head work
        typer.echo(f"{hit.rank:>3}  {hit.score:+.4f}{relevance}  {hit.modality:<10}  {hit.id}  {_preview(hit)}{fields}")


def _search_here(
    index_dir,
    text,
    image,
    audio,
    video,
    k,
    modality,
    calibration,
    device,
    runtime,
    where=None,
    min_relevance=None,
    threads=None,
) -> list[Hit]:
    """Load the index and its model in this process (seconds: torch and the model load)."""
    from .. import open_index
    from ..encoders.base import set_threads

    index = open_index(index_dir, device=device, runtime=runtime)  # the folder only: the model loads on first use
    if calibration == "none":
        index = index.with_calibration("none")
    # an empty list of queries checks k, modality, where and min_relevance against this index
    # and encodes nothing: a mistake there fails before torch is imported and the model loads
    index.search([], k=k, modality=modality, where=where, min_relevance=min_relevance)
    set_threads(threads)
    hits = index.search(
        text, image=image, audio=audio, video=video, k=k, modality=modality, where=where, min_relevance=min_relevance
    )
    only_text = text is not None and all(m is None for m in (image, audio, video))
    hint = export_hint(index, runtime) if only_text else None
    if hint and sys.stderr.isatty():  # for a person at a terminal; scripts and pipes get the results alone
        say(hint)
    return hits


def export_hint(index, runtime: str) -> str | None:
    """What to do when a text query had to load PyTorch and the model although an ONNX export
    would spare that (None when it did not, or cannot)."""
    encoder = index.query_encoder("text")
    if runtime != "auto" or getattr(encoder, "runtime", None) != "torch":
        return None
    if not getattr(encoder, "onnx_exportable", False):
        return None
    return (
        "hint: this query loaded PyTorch and the model (seconds); search once with --runtime onnx to "
        "export the model to ONNX, and later text queries need neither"
    )


def _ask_server(url, token, index_dir, text, image, k, modality, calibration, where, min_relevance) -> list[dict]:
    """Ask a running server (milliseconds: the model is already warm there)."""
    from ..client import Client

    answer = Client(url, token=token).search_response(
        text,
        image,
        k=k,
        modality=modality,
        calibration=calibration,
        index=Path(index_dir).name,
        where=where,
        min_relevance=min_relevance,
    )
    return [hit.model_dump() for hit in answer.hits]  # as the server sent them (media URLs included)


def _preview(hit, width: int = 80) -> str:
    parts = []
    parts += [f"[{_shown_path(media)}]" for media in (hit.image, hit.audio, hit.video) if media]
    if hit.text:
        text = " ".join(hit.text.split())
        parts.append(text if len(text) <= width else text[: width - 1] + "…")
    return " ".join(parts)


def _shown_path(path: str) -> str:
    """A media path as a person types it: relative to the current folder when it lies inside it
    (the index stores absolute paths), else as stored."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return path


def _metadata(metadata) -> str:
    """A hit's metadata fields as ``name=value`` pairs (strings quoted only where they hold spaces)."""
    shown = []
    for key, value in metadata.items():
        text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) or " " in value else value
        shown.append(f"{key}={text}")
    return ", ".join(shown)

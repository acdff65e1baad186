"""``mixsearch cache info|prune|clear``: what the embedding cache holds, keeping it under its
size limit, emptying it (a thin face over ``mixsearch.embedding.cache``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from ._app import app, failing_cleanly, say

cache_app = typer.Typer(
    no_args_is_help=True,
    help="The embedding cache (one file per model, plus ONNX exports): info, prune, clear.",
)
app.add_typer(cache_app, name="cache")

Folder = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", help="The cache folder (default $MIXSEARCH_CACHE_DIR or ~/.cache/mixsearch)."),
]
MaxSize = Annotated[
    Optional[str],
    typer.Option(
        "--max-size", help="Size limit, e.g. 2GB, 500MB, 1GiB, or none (default $MIXSEARCH_CACHE_MAX_BYTES or 2GB)."
    ),
]


def _command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``fn`` as a ``cache`` subcommand (errors as every command's: ``failing_cleanly``)."""
    return cache_app.command()(failing_cleanly(fn))


def _limit(max_size: Optional[str]) -> int | None:
    from ..embedding.cache import max_cache_bytes, parse_size

    return max_cache_bytes() if max_size is None else parse_size(max_size)


def human(n: int | None) -> str:
    """Bytes as people read them (decimal units, like ``--max-size``)."""
    if n is None:
        return "no limit"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n:.1f} TB"


@_command
def info(
    cache_dir: Folder = None,
    max_size: MaxSize = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Each model's embedding file (entries, bytes), the ONNX exports, the total and the limit."""
    from ..embedding.cache import cache_info

    found = cache_info(cache_dir)
    found.max_bytes = _limit(max_size)
    if as_json:
        typer.echo(json.dumps(found.to_dict(), indent=2))
        return
    typer.echo(
        f"{found.root}: {found.entries} entries, {human(found.bytes)} of {human(found.max_bytes)}"
        + ("" if found.files or found.exports else " (empty)")
    )
    for f in found.files:
        typer.echo(f"  embeddings  {f.path.name}  {f.entries} entries  {human(f.bytes)}")
    for e in found.exports:
        typer.echo(f"  onnx        {e.path.name}  {human(e.bytes)}")


@_command
def prune(cache_dir: Folder = None, max_size: MaxSize = None) -> None:
    """Evict the least recently used entries (and ONNX exports) until the cache fits its limit."""
    from ..embedding.cache import prune as prune_cache

    limit = _limit(max_size)
    done = prune_cache(cache_dir, limit)
    say(
        f"pruned {done.entries} entries and {done.exports} ONNX exports: "
        f"{human(done.bytes_before)} -> {human(done.bytes_after)} (limit {human(limit)})"
    )


@_command
def clear(cache_dir: Folder = None) -> None:
    """Remove every embedding file and ONNX export (each item is encoded again when next needed)."""
    from ..embedding.cache import clear as clear_cache

    gone = clear_cache(cache_dir)
    say(
        f"{gone.root}: removed {len(gone.files)} embedding files ({gone.entries} entries) and "
        f"{len(gone.exports)} ONNX exports, {human(gone.bytes)}"
    )

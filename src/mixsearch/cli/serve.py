"""``mixsearch serve``: a REST API and a web page over one or more indexes, from a warm process."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import command, say


@command
def serve(
    indexes: list[Path] = typer.Argument(..., help="Index folders made by 'mixsearch index' (or 'mixsearch demo')."),
    host: str = typer.Option(
        "127.0.0.1", help="Address to listen on. Anything but loopback needs --token (or MIXSEARCH_TOKEN)."
    ),
    port: int = typer.Option(8000, min=0, max=65535, help="Port (0: any free port)."),
    token: Optional[str] = typer.Option(
        None,
        envvar="MIXSEARCH_TOKEN",
        show_envvar=True,
        help="Access token every request must carry (Authorization: Bearer ...; a browser opens /?token=... once).",
    ),
    threads: int = typer.Option(1, help="torch threads for encoding queries (1 is fastest per query on few cores)."),
    max_upload_mb: float = typer.Option(10.0, help="Largest uploaded image, in MiB."),
    max_pixels: int = typer.Option(40_000_000, help="Largest uploaded image, in pixels (decompression-bomb guard)."),
    reload_interval: float = typer.Option(
        2.0, help="Seconds between checks for indexes rebuilt or recalibrated on disk (0: only on POST /reload)."
    ),
    access_log: bool = typer.Option(False, help="Log every request."),
    allow_origin: Optional[list[str]] = typer.Option(
        None,
        help="A web origin (https://app.example.org) whose pages may call the API from a browser; repeatable. "
        "Browsers' requests for any other site are refused (403).",
    ),
    device: Optional[str] = typer.Option(None, help="Device for the models (cpu, cuda); default: CUDA when present."),
) -> None:
    """Serve indexes over HTTP: REST API (docs at /docs) and a search page at /. Ctrl-C stops it."""
    from ..server import serve as run_server

    def ready(url: str) -> None:
        say(f"mixsearch: serving {', '.join(str(i) for i in indexes)} at {url}/  (API docs: {url}/docs)")
        if token:
            say(
                "  every request needs the token: 'Authorization: Bearer <token>'; "
                "in a browser open /?token=<token> once"
            )
        say("  Ctrl-C to stop")

    try:
        run_server(
            indexes,
            host=host,
            port=port,
            token=token or None,
            threads=threads,
            device=device,
            max_upload_bytes=int(max_upload_mb * 2**20),
            max_pixels=max_pixels,
            watch_interval=reload_interval,
            access_log=access_log,
            allowed_origins=allow_origin or (),
            on_ready=ready,
        )
    except KeyboardInterrupt:
        say("mixsearch: interrupted")
        raise typer.Exit(130) from None
    say("mixsearch: stopped")

"""The ``mixsearch`` command's app, and the one place errors become messages and exit codes.

Exit codes: 0 success; 1 a run that failed (bad input, a model or index that cannot be used,
a calibration that does not fit); 2 a usage error (an unknown option, an impossible value, a
query image that does not exist). Expected failures print ``error: ...`` and no traceback.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from ..errors import MixsearchError, UsageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Mixed modality search with modality-gap calibration (GR-CLIP).",
)

#: Every command's default model: bundled, so it works offline; pass --model for any HF id or folder.
DEFAULT_MODEL = "mixclip-flickr8k"

# The options of every command that encodes, declared once (use as ``device: Device = None``).
Device = Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available).")]
BatchSize = Annotated[Optional[int], typer.Option(help="Items per encoder batch.")]
CacheDir = Annotated[Optional[Path], typer.Option(help="Embedding cache (default ~/.cache/mixsearch).")]
Threads = Annotated[Optional[int], typer.Option(help="CPU threads for encoding (default: all cores).")]
Runtime = Annotated[
    str, typer.Option(help="Transformers models: auto (ONNX Runtime for long runs when installed), torch or onnx.")
]
VideoFrames = Annotated[
    Optional[int],
    typer.Option("--video-frames", help="Frames sampled per video, evenly spread (default 8; X-CLIP takes its own)."),
]


def parse_index_options(pairs: list[str]) -> dict[str, object]:
    """``["M=32", "metric=ip"]`` -> ``{"M": 32, "metric": "ip"}`` (numbers become numbers); the
    index kind checks the names and values."""
    options: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--index-option takes NAME=VALUE, got {pair!r}")
        options[name.strip()] = _number_or_text(value.strip())
    return options


def _number_or_text(value: str) -> object:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


class _EchoHandler(logging.Handler):
    """Library log records to the terminal's stderr (looked up at each record, so test runners
    that swap streams see them too)."""

    def emit(self, record: logging.LogRecord) -> None:
        typer.echo(self.format(record), err=True)


@contextlib.contextmanager
def _logging_to_terminal() -> Iterator[None]:
    """INFO and above to stderr while a command runs (progress bars follow the level: mixsearch.progress);
    restored afterwards, so a command run inside another program leaves its logging as it was."""
    logger = logging.getLogger("mixsearch")
    handler, level = _EchoHandler(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def say(message: str) -> None:
    """A message for the person at the terminal (stderr, so stdout stays for results)."""
    typer.echo(message, err=True)


def failing_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its log on the terminal, and a ``MixsearchError`` it raises turned into
    ``error: ...`` on stderr and the error's exit code (no traceback)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            with _logging_to_terminal():
                return fn(*args, **kwargs)
        except MixsearchError as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(exit_code(err)) from None

    return run


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``fn`` as a top-level command (see ``failing_cleanly``)."""
    return app.command()(failing_cleanly(fn))


#: The exit code of each error class, the first that matches; any other ``MixsearchError`` is 1.
EXIT_CODES: dict[type[MixsearchError], int] = {UsageError: 2}


def exit_code(err: MixsearchError) -> int:
    """The exit code a command that failed with ``err`` ends with (the module docstring's table)."""
    return next((code for cls, code in EXIT_CODES.items() if isinstance(err, cls)), 1)


def floats(text: str, what: str) -> tuple[float, ...]:
    """Comma-separated numbers, or a usage error naming the option."""
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"{what}: expected comma-separated numbers, got {text!r}") from None

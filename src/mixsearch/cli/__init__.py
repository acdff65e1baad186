"""The ``mixsearch`` command: one module per command, each a thin face over the Python API."""

from . import (  # noqa: F401 - registers the commands
    add,
    audit,
    bench,
    cache,
    calibrate,
    delete,
    demo,
    fit_relevance,
    index,
    info,
    recalibrate,
    search,
    serve,
)
from ._app import DEFAULT_MODEL, app


def main() -> None:
    """Entry point of ``python -m mixsearch``."""
    app(prog_name="mixsearch")


__all__ = ["DEFAULT_MODEL", "app", "main"]

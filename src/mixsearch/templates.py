"""The Jinja2 environment every HTML page of mixsearch renders through (the audit page, the bench
case study; the server may share it): autoescaped, so any text from a corpus, a query or a path is
shown, never run, and a missing variable is an error rather than an empty string."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

#: The package's page templates (package data).
TEMPLATES = Path(__file__).parent / "templates"


@cache
def environment(folder: Path = TEMPLATES) -> Environment:
    """A ``jinja2.Environment`` over ``folder``, autoescaping every template."""
    return Environment(
        loader=FileSystemLoader(str(folder)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=StrictUndefined,
    )


def render(name: str, **context: Any) -> str:
    """The page template ``name`` (in ``TEMPLATES``) filled with ``context``."""
    return str(environment().get_template(name).render(**context))

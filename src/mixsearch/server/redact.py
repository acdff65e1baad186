"""No server path in an answer: the manifest records where the model, the calibration file and its
fitting data were on disk (``/home/me/...``), which tells a client about the server's files. Answers
carry the file's name instead (``means.safetensors``); words such as ``corpus`` or ``none`` and
Hugging Face ids (``org/model``) are kept as they are."""

from __future__ import annotations

import re
from typing import Any

_SEGMENT = r"""[^/\\\s'"`<>|,;()\[\]{}]+"""
# a path: from a root ("/", "~/", "../", "C:\\"), not inside a URL ("http://h/a/") or a word
# ("org/model"), with at least one folder; it becomes its last part, the file's (or folder's) name
_PATH = re.compile(rf"""(?<![\w.:/\\~-])(?:~|\.\.?|[A-Za-z]:)?[/\\](?:{_SEGMENT}[/\\]+)+(?:{_SEGMENT})?""")


def redact_text(text: str) -> str:
    """``text`` with every path in it cut to its last part (``/srv/x/means.safetensors`` ->
    ``means.safetensors``)."""
    return _PATH.sub(lambda found: re.split(r"[/\\]+", found.group(0).rstrip("/\\"))[-1], text)


def redact_paths(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings) with every path in its strings cut to its last part."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact_paths(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_paths(item) for item in value]
    return value


__all__ = ["redact_paths", "redact_text"]

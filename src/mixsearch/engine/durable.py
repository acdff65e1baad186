"""Durable file writes, below the store and the manifest: an atomic JSON replace and fsyncs.

Kept apart so that the manifest (which writes itself) and the store (which commits generations)
share them without importing each other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json_atomic(path: Path, data: dict) -> None:
    """Replace ``path`` with JSON: write a temporary file, flush it to disk, rename it over."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Flush a file, or every file below a folder, to disk."""
    if not path.exists():  # a role this change did not write (a recalibration keeps the documents)
        return
    for p in [path] if path.is_file() else sorted(path.rglob("*")):
        if p.is_file():
            with p.open("rb") as f:
                os.fsync(f.fileno())

"""Progress bars that follow the log level, as sentence-transformers does: with ``progress=None``
a bar shows when the ``mixsearch`` logger is at INFO or below (the command line sets INFO; a
library user who has not configured logging sees none)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger("mixsearch")


def show_progress(progress: bool | None) -> bool:
    """``progress`` as given, or, when None, whether the ``mixsearch`` logger shows INFO."""
    return logger.isEnabledFor(logging.INFO) if progress is None else progress


def progress_bar(total: int, desc: str, progress: bool | None = None, iterable: Iterable | None = None) -> Any:
    """A tqdm bar (a context manager), disabled when progress is off or there is nothing to do."""
    from tqdm.auto import tqdm

    return tqdm(
        iterable, total=total, desc=desc, unit="item", leave=False, disable=not show_progress(progress) or total == 0
    )

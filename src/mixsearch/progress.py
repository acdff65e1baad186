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
    if not show_progress(progress) or total == 0:
        return _NoBar(iterable)  # tqdm.auto imports asyncio: 30 ms of a cold query for a bar never shown
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="item", leave=False)


class _NoBar:
    """What a disabled bar does: nothing (iterating it iterates ``iterable``)."""

    def __init__(self, iterable: Iterable | None = None):
        self.iterable = iterable

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else ())

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

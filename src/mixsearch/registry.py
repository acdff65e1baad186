"""A name -> object table whose built-in entries are ``"module:attribute"`` paths, imported on
first use: a registry module then imports none of what it lists, so a backend may import the
registry's module without a cycle, and optional libraries load only for the entry asked for."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, TypeVar

T = TypeVar("T")


def import_path(path: str) -> Any:
    """The object a ``"package.module:attribute"`` path names."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _resolve(entry: Any) -> Any:
    if isinstance(entry, str):
        return import_path(entry)
    if isinstance(entry, tuple):  # e.g. (class, test) pairs, each part a path or an object
        return tuple(import_path(part) if isinstance(part, str) else part for part in entry)
    return entry


class Registry(MutableMapping[str, T]):
    """A dict of registered objects; an entry given as a path (or a tuple of paths) is imported
    the first time it is read and kept. Iterating the names imports nothing."""

    def __init__(self, entries: Mapping[str, Any] | None = None):
        self._entries: dict[str, Any] = dict(entries or {})
        self._resolved: set[str] = set()

    def __getitem__(self, name: str) -> T:
        entry = self._entries[name]
        if name not in self._resolved:
            entry = self._entries[name] = _resolve(entry)
            self._resolved.add(name)
        return entry

    def __setitem__(self, name: str, value: T) -> None:
        self._entries[name] = value
        self._resolved.add(name)

    def __delitem__(self, name: str) -> None:
        del self._entries[name]
        self._resolved.discard(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({', '.join(self._entries)})"

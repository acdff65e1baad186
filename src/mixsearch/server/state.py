"""What a server holds: each index opened once with its model, its plain-CLIP view, and the swap
that picks up an index rebuilt or recalibrated on disk.

A request takes the current ``Served`` object of its index once (``Registry.get``) and uses it to
the end; a reload opens the new state beside it and swaps the reference, so a request never sees a
half-read index and a live object is never changed under a request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders import Encoder
from ..engine import MixIndex, open_index
from ..errors import CalibrationError, MixsearchError, UsageError
from ..types import MEDIA

log = logging.getLogger(__name__)

#: The two ways a served index can rank: as stored, or as plain CLIP (all means zero), which is
#: calibration method ``none`` everywhere; ``plain`` is still taken for it (its name before 0.4).
VIEWS = ("calibrated", "none")
VIEW_ALIASES = {"plain": "none"}


def view_name(name: str) -> str:
    """A view by its one name (``plain`` is ``none``); an unknown name is a ``UsageError``."""
    name = VIEW_ALIASES.get(name, name)
    if name not in VIEWS:
        raise UsageError(f"unknown calibration {name!r}; expected calibrated or none (plain CLIP)")
    return name


class NotFound(MixsearchError, LookupError):
    """An index name or document id that this server does not have (HTTP 404)."""


class LRU:
    """A small thread-safe least-recently-used map (thumbnails)."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        """The value under ``key`` (now most recent), or None."""
        with self._lock:
            if key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key: Any, value: Any) -> None:
        """Store a value, dropping the least recently used past ``size``."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


@dataclass
class Served:
    """One index as served: the opened index, its plain view, and what requests look up in it."""

    name: str
    folder: Path
    index: MixIndex
    plain: MixIndex | None  # None when the index itself is plain CLIP
    encode_lock: threading.Lock
    opened: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.rows = {doc_id: row for row, doc_id in enumerate(self.index.ids)}
        self.thumbnails = LRU(4096)
        self._raw: dict[str, np.ndarray] | None = None
        self.media_roots = _media_roots(self.index)

    @property
    def model(self) -> dict:
        """The model the index was built with (name, fingerprint, dim, modalities)."""
        return manifest_of(self.index)["model"]

    @property
    def calibrated(self) -> bool:
        """Whether the index as stored is calibrated (otherwise both views are plain CLIP)."""
        return self.plain is not None

    def view(self, name: str) -> MixIndex:
        """The index under the ``calibrated`` (as stored) or ``none`` (plain CLIP; alias ``plain``) view."""
        name = view_name(name)
        return self.plain if name == "none" and self.plain is not None else self.index

    def views(self) -> list[str]:
        """The views that differ: both when the index is calibrated, else only ``calibrated``."""
        return list(VIEWS) if self.calibrated else ["calibrated"]

    def row(self, doc_id: str) -> int:
        """The row of a document id, or ``NotFound``."""
        try:
            return self.rows[doc_id]
        except KeyError:
            raise NotFound(f"no document {doc_id!r} in index {self.name!r}") from None

    def document(self, doc_id: str) -> dict:
        """A document's fields (id, modality, text, media paths as recorded)."""
        row = self.row(doc_id)
        return {col: values[row] for col, values in self.index.documents.items()}

    def raw_row(self, modality: str, doc_id: str) -> np.ndarray:
        """A document's stored raw embedding of one part (a ``(1, d)`` array): "more like this"
        queries with what the index already holds, nothing re-encoded."""
        doc = self.document(doc_id)
        if not doc.get(modality) and not (modality == "text" and doc.get("text")):
            raise UsageError(f"document {doc_id!r} has no {modality}")
        if self._raw is None:
            self._raw = self.index.raw()
        return np.asarray(self._raw[modality][self.rows[doc_id]], dtype=np.float32)[None, :]

    def counts(self) -> dict:
        """Documents per modality, as the manifest records them."""
        return dict(manifest_of(self.index).get("documents", {}))


def manifest_of(index: MixIndex) -> dict:
    """An index's manifest as a plain dict: the one place server code reads the manifest (model,
    calibration record, generation, counts), as JSON answers carry it."""
    return index.manifest.to_dict()


def _media_roots(index: MixIndex) -> frozenset[Path]:
    """The real folders holding the index's recorded media files (absolute paths only: a relative
    one, as mixsearch 0.1 stored, meant the build's working directory, which the server cannot
    know). A recorded file is served only if its real path lies in or below one of them, so a
    symlink out of the corpus is not, whatever the server's working directory."""
    parents = {os.path.dirname(p) for m in MEDIA for p in index.documents.get(m, []) if p and os.path.isabs(p)}
    return frozenset(Path(os.path.realpath(folder)) for folder in parents)  # few, however many documents


def index_names(folders: Sequence[Path]) -> list[str]:
    """A short, unique name per folder: its own name, numbered when two share it."""
    names: list[str] = []
    for folder in folders:
        base = Path(os.path.abspath(folder)).name or "index"
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


class Registry:
    """Every served index by name, each model loaded once (shared by indexes built with it), and
    the reload that swaps in an index changed on disk."""

    def __init__(
        self,
        folders: Sequence[str | Path],
        *,
        device: str | None = None,
        warm_up: Callable[[Served], None] | None = None,
        opener: Callable[..., MixIndex] = open_index,
    ):
        if not folders:
            raise UsageError("give at least one index folder to serve")
        self.device = device
        self.warm_up = warm_up  # queries.warm_up, handed in: queries builds on this module
        self._open = opener
        self._encoders: dict[tuple[str, str], tuple[Encoder, threading.Lock]] = {}
        self._reload_lock = threading.Lock()
        self.errors: dict[str, str] = {}
        self.reloads = 0
        paths = [Path(f) for f in folders]
        self.served: dict[str, Served] = {}
        for name, folder in zip(index_names(paths), paths):
            self.served[name] = self._load(name, folder)
        self.default = next(iter(self.served))
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- lookup ---------------------------------------------------------------------------------

    def get(self, name: str | None = None) -> Served:
        """The current state of an index (the first served one when ``name`` is None)."""
        try:
            return self.served[name or self.default]
        except KeyError:
            raise NotFound(f"no index named {name!r} here; this server has: {', '.join(self.served)}") from None

    # -- loading --------------------------------------------------------------------------------

    def _load(self, name: str, folder: Path) -> Served:
        """Open ``folder`` (reusing a loaded model when the index was built with it), make its
        plain view, and warm the model up; retried when the folder changes while it is read."""
        for attempt in range(3):
            try:
                index = self._open_with_shared_encoder(folder)
            except MixsearchError:
                if attempt == 2:
                    raise
                time.sleep(0.2)
                continue
            if not index.is_stale():
                break
        encoder, lock = self._encoder_entry(index)
        method = manifest_of(index)["calibration"].get("method")
        plain = None if method == "none" else index.with_calibration("none")
        served = Served(name, folder, index, plain, lock)
        if self.warm_up is not None:
            self.warm_up(served)
        log.info("serving %s as %r: %d documents", folder, name, len(index))
        return served

    def _open_with_shared_encoder(self, folder: Path) -> MixIndex:
        """Open with a model already in memory when the index was built with it (the usual
        reload), else leave the model to load lazily."""
        for encoder, _ in list(self._encoders.values()):
            try:
                return self._open(folder, encoder=encoder, device=self.device)
            except CalibrationError:  # built with another model
                continue
        return self._open(folder, device=self.device)

    def _encoder_entry(self, index: MixIndex) -> tuple[Encoder, threading.Lock]:
        model = manifest_of(index)["model"]
        key = (model["name"], model["fingerprint"])
        if key not in self._encoders:
            self._encoders[key] = (index.encoder, threading.Lock())  # loads the model once, here
        return self._encoders[key]

    # -- reloading ------------------------------------------------------------------------------

    def reload(self, force: bool = False) -> dict[str, str]:
        """Reopen every index whose folder changed (all of them with ``force``) and swap it in.
        Returns what happened to each: ``unchanged``, ``reloaded`` or ``error: ...`` (the old
        state keeps serving after an error)."""
        with self._reload_lock:
            status = {}
            for name, served in list(self.served.items()):
                if not force and not served.index.is_stale():
                    status[name] = "unchanged"
                    continue
                try:
                    self.served[name] = self._load(name, served.folder)  # the swap: one assignment
                except MixsearchError as err:
                    self.errors[name] = str(err)
                    status[name] = f"error: {err}"
                    log.warning("%s: could not reload, still serving the state opened before (%s)", name, err)
                    continue
                self.errors.pop(name, None)
                self.reloads += 1
                status[name] = "reloaded"
                log.info("%s: reloaded from %s", name, served.folder)
            return status

    def watch(self, interval: float) -> None:
        """Check for changed folders every ``interval`` seconds in a background thread."""
        if interval <= 0 or self._watcher is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.reload()
                except Exception:  # the watcher must outlive any surprise
                    log.exception("reload check failed")

        self._watcher = threading.Thread(target=loop, name="mixsearch-reload", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        """Stop the background reload check (a daemon thread: a reload in progress is not waited
        for long, so a stop stays quick)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=1)
            self._watcher = None

"""An on-disk embedding cache: one SQLite file per model fingerprint, keyed by content.

Keys hash the content itself (the text, or the bytes of a media file), so a renamed file is
still a hit and an edited one is a miss. Re-indexing, re-calibrating or resuming an interrupted
build never re-encodes what is unchanged.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..ingest.media import check_regular_file, shown

_BATCH = 500  # SQLite's bound-parameter limit is comfortably above this


def content_key(modality: str, item: str | Path) -> str:
    """``modality:sha256`` of a text, or of a media file's bytes; an ``InputError`` names a bad item.

    ``modality`` may carry a loading option after an ``@`` (``video@8``: eight frames per clip),
    which keys the item apart. A media path must name a regular file: a FIFO or a device
    (``/dev/zero``) would block or never end, and a NUL character in it is refused as Python's
    ``open`` would (with a ``ValueError``).
    """
    h = hashlib.sha256(modality.encode() + b"\0")
    what = modality.split("@")[0]
    if modality == "text":
        try:
            h.update(str(item).encode("utf-8"))
        except UnicodeEncodeError as err:  # a lone surrogate, e.g. a cut emoji from JSON
            raise InputError(f"text is not valid Unicode at character {err.start} ({err.reason})") from None
    else:
        check_regular_file(item, what)
        try:
            with open(item, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except FileNotFoundError:
            raise InputError(f"{shown(item)}: {what} file not found") from None
        except (OSError, ValueError) as err:
            raise InputError(f"{shown(item)}: unreadable {what} file ({err})") from None
    return h.hexdigest()


class EmbeddingCache:
    """Embeddings of one model (by fingerprint), keyed by ``content_key``; one SQLite file."""

    def __init__(self, root: str | Path, fingerprint: str, dim: int):
        self.path = Path(root) / f"embeddings-{fingerprint}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embedding "
            "(key TEXT PRIMARY KEY, vector BLOB NOT NULL, truncated INTEGER NOT NULL)"
        )
        # items a Ray worker could not encode (embedding.distributed): later runs leave them to the
        # local pass, which reports them, instead of starting a cluster job for them again
        self._db.execute("CREATE TABLE IF NOT EXISTS failed_remotely (key TEXT PRIMARY KEY, message TEXT NOT NULL)")

    def get_many(self, keys: list[str]) -> dict[str, tuple[np.ndarray, bool]]:
        """The cached ``(vector, truncated)`` of every key that has one."""
        found = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _BATCH):
            chunk = unique[start : start + _BATCH]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, vector, truncated FROM embedding WHERE key IN ({marks})", chunk)
            for key, blob, truncated in rows:
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.shape[0] == self.dim:  # a stale row of another shape is simply re-encoded
                    found[key] = (vector, bool(truncated))
        return found

    def put_many(self, keys: list[str], vectors: np.ndarray, truncated: Sequence[bool] | np.ndarray) -> None:
        """Store vectors (and truncation flags) under their keys, in one transaction."""
        rows = [
            (k, np.ascontiguousarray(v, dtype=np.float32).tobytes(), int(t))
            for k, v, t in zip(keys, vectors, truncated)
        ]
        with self._db:  # one transaction per batch: a crash loses at most this batch
            self._db.executemany("INSERT OR REPLACE INTO embedding VALUES (?, ?, ?)", rows)

    def mark_failed_remotely(self, keys: list[str], messages: list[str]) -> None:
        """Remember that a remote worker could not encode these items (and why)."""
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO failed_remotely VALUES (?, ?)", zip(keys, messages))

    def failed_remotely(self, keys: list[str]) -> set[str]:
        """The keys among ``keys`` that a remote worker could not encode before."""
        found: set[str] = set()
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _BATCH):
            chunk = unique[start : start + _BATCH]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key FROM failed_remotely WHERE key IN ({marks})", chunk)
            found.update(key for (key,) in rows)
        return found

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM embedding").fetchone()[0]

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

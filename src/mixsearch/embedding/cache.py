"""An on-disk embedding cache: one SQLite file per model fingerprint, keyed by content.

Keys hash the content itself (the text, or the bytes of a media file), so a renamed file is
still a hit and an edited one is a miss. Re-indexing, re-calibrating or resuming an interrupted
build never re-encodes what is unchanged.

Nothing read back is trusted blindly: each row carries a checksum over its key, the model's
fingerprint, the dimension, the truncation flag and the vector's bytes, so a row swapped with
another, copied from another model's file, cut short or edited fails its check; such a row, or one
whose vector is not finite, is a miss (deleted, counted in one warning) and the item is encoded
again. A non-finite vector is never stored. The cache stays under a size limit
(``max_cache_bytes``: 2 GB per cache folder by default) by evicting the least recently used
entries, embeddings and ONNX exports alike, after a run's writes (``prune``).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import cache_root
from ..errors import InputError, UsageError
from ..ingest.media import check_regular_file, shown

log = logging.getLogger(__name__)

_BATCH = 500  # SQLite's bound-parameter limit is comfortably above this

#: Environment variable that sets the cache's size limit (``2GB``, ``500MB``, bytes, or ``none``).
MAX_BYTES_ENV = "MIXSEARCH_CACHE_MAX_BYTES"
#: The default size limit of a cache folder (embeddings of every model, plus ONNX exports).
DEFAULT_MAX_BYTES = 2_000_000_000
#: A build over the limit prunes down to this share of it, so the next builds do not prune (and
#: rewrite the file) again at once.
PRUNE_TO = 0.9
#: What a document whose embedding came out NaN or infinite is told (the model failed, not the input).
NOT_FINITE = "the model's embedding of it is not finite (NaN or infinity); not cached, not indexed"
PAGE_SIZE = 16384
_EMPTY_PAGES = 6  # an empty cache file: the schema, and the roots of two tables and their three indexes
_FILE_GLOB = "embeddings-*.sqlite"
_UNITS = {
    "": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip


def content_key(modality: str, item: Any) -> str:
    """``modality:sha256`` of a text, or of a media file's bytes (for ``multimodal``, of a (text,
    image path) pair's keys); an ``InputError`` names a bad item.

    ``modality`` may carry a loading option after an ``@`` (``video@8``: eight frames per clip;
    ``text@query``: a query of a model with query prompts), which keys the item apart. A media
    path must name a regular file: a FIFO or a device (``/dev/zero``) would block or never end,
    and a NUL character in it is refused as Python's ``open`` would (with a ``ValueError``).
    """
    h = hashlib.sha256(modality.encode() + b"\0")
    what = modality.split("@")[0]
    if what == "multimodal":  # a (text, image path) pair a joint encoder embeds as one item
        text, image = item
        h.update(f"{content_key('text', text)}:{content_key('image', image)}".encode())
        return h.hexdigest()
    if what == "text":
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


def row_checksum(key: str, fingerprint: str, dim: int, truncated: bool, vector: bytes) -> bytes:
    """What binds a row to its content (the key hashes it), its model and its shape."""
    h = hashlib.blake2b(digest_size=16)
    for part in (key.encode(), fingerprint.encode(), b"%d" % dim, b"%d" % int(truncated)):
        h.update(part + b"\0")
    h.update(vector)
    return h.digest()


def parse_size(text: str | int) -> int | None:
    """``"2GB"`` -> 2_000_000_000 (kB/MB/GB/TB are powers of 1000, KiB/MiB/GiB of 1024; a bare
    number is bytes); ``"none"`` (or ``"unlimited"``) -> None, no limit."""
    if isinstance(text, int):
        return text
    value = str(text).strip().lower().replace("_", "")
    if value in ("none", "unlimited", "off"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([kmgt]i?b|b)?", value)
    if not match:
        raise UsageError(f"cache size {text!r}: expected a size such as 2GB, 500MB, 1GiB, a number of bytes, or none")
    return int(float(match[1]) * _UNITS[match[2] or ""])


def max_cache_bytes() -> int | None:
    """The cache's size limit: ``$MIXSEARCH_CACHE_MAX_BYTES``, else ``DEFAULT_MAX_BYTES`` (2 GB)."""
    given = os.environ.get(MAX_BYTES_ENV)
    if not given:
        return DEFAULT_MAX_BYTES
    try:
        return parse_size(given)
    except UsageError as err:
        raise UsageError(f"{MAX_BYTES_ENV}: {err}") from None


def _limit(max_bytes: int | None | str) -> int | None:
    """A size limit given as bytes, None (no limit), a size (``"2GB"``) or ``"default"``."""
    if isinstance(max_bytes, str):
        return max_cache_bytes() if max_bytes == "default" else parse_size(max_bytes)
    return max_bytes


class EmbeddingCache:
    """Embeddings of one model (by fingerprint), keyed by ``content_key``; one SQLite file.

    ``max_bytes``: the cache folder's size limit (bytes, or a size such as ``"2GB"``), applied by
    ``close`` when this cache was written to (default ``max_cache_bytes()``; None: no limit).
    """

    def __init__(self, root: str | Path, fingerprint: str, dim: int, *, max_bytes: int | None | str = "default"):
        self.root = Path(root)
        self.path = self.root / f"embeddings-{fingerprint}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fingerprint, self.dim = fingerprint, dim
        self.max_bytes = _limit(max_bytes)
        self.rejected = 0  # rows that failed their check and were deleted, over this cache's life
        self._wrote = False
        self._db = sqlite3.connect(self.path, timeout=30)
        try:
            # a new file's pages hold several rows: with SQLite's 4 KiB pages a 512-d row (2.1 KB)
            # took a page to itself, 4.2 KB an item; 16 KiB pages: 2.4 KB (no effect on older files)
            self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; a cache may lose its last batch
            _migrate(self._db, self.path)
        except sqlite3.OperationalError:  # locked, read-only...: not damage
            raise
        except sqlite3.DatabaseError as err:  # a damaged file ("file is not a database"): start afresh
            log.warning("embedding cache %s is damaged (%s): starting it afresh", self.path, err)
            self._db.close()
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
                p.unlink(missing_ok=True)
            self._db = _connect(self.path)
            _migrate(self._db, self.path)
        # items a Ray worker could not encode (embedding.distributed): later runs leave them to the
        # local pass, which reports them, instead of starting a cluster job for them again
        self._db.execute("CREATE TABLE IF NOT EXISTS failed_remotely (key TEXT PRIMARY KEY, message TEXT NOT NULL)")

    def get_many(self, keys: list[str]) -> dict[str, tuple[np.ndarray, bool]]:
        """The cached ``(vector, truncated)`` of every key that has a sound row.

        A row that fails its checksum (swapped, edited, cut short, another model's) or holds a
        non-finite vector is deleted and left out, so its item is encoded again."""
        found, bad = {}, []
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _BATCH):
            chunk = unique[start : start + _BATCH]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, vector, truncated, checksum FROM embedding WHERE key IN ({marks})", chunk
            )
            for key, blob, truncated, checksum in rows:
                blob = bytes(blob)
                sound = (
                    len(blob) == 4 * self.dim
                    and checksum == row_checksum(key, self.fingerprint, self.dim, bool(truncated), blob)
                    and np.isfinite(vector := np.frombuffer(blob, dtype=np.float32)).all()
                )
                if sound:
                    found[key] = (vector, bool(truncated))
                else:
                    bad.append(key)
        now = time.time()
        with self._db:  # mark the hits used now (least recently used goes first), drop the bad rows
            self._db.executemany("UPDATE embedding SET used = ? WHERE key = ?", ((now, k) for k in found))
            self._db.executemany("DELETE FROM embedding WHERE key = ?", ((k,) for k in bad))
        if bad:
            self.rejected += len(bad)
            log.warning(
                "embedding cache %s: %d entr%s failed the integrity check (checksum or non-finite vector); "
                "deleted, encoding again",
                self.path,
                len(bad),
                "y" if len(bad) == 1 else "ies",
            )
        return found

    def put_many(self, keys: list[str], vectors: np.ndarray, truncated: Sequence[bool] | np.ndarray) -> None:
        """Store vectors (and truncation flags) under their keys, in one transaction.

        A vector that is not finite (NaN, infinity) or not ``dim`` wide is refused (``InputError``):
        callers report such an item instead of storing it."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(keys), -1)
        if vectors.shape[1] != self.dim:
            raise InputError(f"embedding cache: vectors of width {vectors.shape[1]}, expected {self.dim}")
        finite = np.isfinite(vectors).all(axis=1)
        if not finite.all():
            raise InputError(f"embedding cache: {int((~finite).sum())} non-finite vector(s) refused")
        now = time.time()
        rows = []
        for k, v, t in zip(keys, vectors, truncated):
            blob = v.tobytes()
            rows.append((k, blob, int(t), row_checksum(k, self.fingerprint, self.dim, bool(t), blob), now))
        with self._db:  # one transaction per batch: a crash loses at most this batch
            self._db.executemany(
                "INSERT OR REPLACE INTO embedding (key, vector, truncated, checksum, used) VALUES (?, ?, ?, ?, ?)", rows
            )
        self._wrote = self._wrote or bool(rows)

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
        """Close the database connection; a cache written to is then pruned to its size limit."""
        self._db.close()
        if self._wrote and self.max_bytes is not None:
            self._wrote = False
            if cache_bytes(self.root) > self.max_bytes:
                prune(self.root, int(self.max_bytes * PRUNE_TO))


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    return db


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Create the table; a 0.3 file (rows without checksums) cannot vouch for its rows: they are
    dropped (each item is encoded again when next needed), not blessed with a checksum."""
    db.execute("BEGIN IMMEDIATE")  # two processes opening an old file migrate it once
    columns: set[str] = set()
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(embedding)")}
        if columns and "checksum" not in columns:
            count = db.execute("SELECT COUNT(*) FROM embedding").fetchone()[0]
            db.execute("DROP TABLE embedding")
            log.warning(
                "embedding cache %s was written by mixsearch 0.3 (no checksums): its %d entries are dropped "
                "and encoded again as needed",
                path,
                count,
            )
        db.execute(
            "CREATE TABLE IF NOT EXISTS embedding (key TEXT PRIMARY KEY, vector BLOB NOT NULL, "
            "truncated INTEGER NOT NULL, checksum BLOB NOT NULL, used REAL NOT NULL)"
        )
        db.execute("CREATE INDEX IF NOT EXISTS embedding_used ON embedding (used)")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if columns and "checksum" not in columns:
        db.execute("VACUUM")  # give the dropped rows' space back


# -- the cache folder as a whole: info, prune, clear ------------------------------------------


@dataclass
class CacheFile:
    """One model's embedding file: its fingerprint, entries and bytes on disk."""

    fingerprint: str
    path: Path
    entries: int
    bytes: int


@dataclass
class OnnxExport:
    """One model's ONNX export folder and its size."""

    fingerprint: str
    path: Path
    bytes: int
    last_used: float


@dataclass
class CacheInfo:
    """What a cache folder holds (``cache_info``)."""

    root: Path
    files: list[CacheFile] = field(default_factory=list)
    exports: list[OnnxExport] = field(default_factory=list)
    max_bytes: int | None = None

    @property
    def bytes(self) -> int:
        """Bytes on disk, embeddings and exports."""
        return sum(f.bytes for f in self.files) + sum(e.bytes for e in self.exports)

    @property
    def entries(self) -> int:
        """Embeddings stored, every model's."""
        return sum(f.entries for f in self.files)

    def to_dict(self) -> dict:
        """A JSON-ready record (what ``mixsearch cache info --json`` prints)."""
        return {
            "root": str(self.root),
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "entries": self.entries,
            "embeddings": [
                {"fingerprint": f.fingerprint, "file": str(f.path), "entries": f.entries, "bytes": f.bytes}
                for f in self.files
            ],
            "onnx_exports": [
                {"fingerprint": e.fingerprint, "folder": str(e.path), "bytes": e.bytes} for e in self.exports
            ],
        }


def _on_disk(path: Path) -> int:
    """A SQLite file's bytes, with its write-ahead log (not the -shm index, a transient 32 KiB)."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _fingerprint_of(path: Path) -> str:
    return path.name[len("embeddings-") : -len(".sqlite")]


def _exports(root: Path) -> list[OnnxExport]:
    folder = root / "onnx"
    if not folder.is_dir():
        return []
    found = []
    for export in sorted(folder.iterdir()):
        if export.is_dir() and not export.name.endswith(".tmp"):
            fingerprint = export.name.rsplit("-v", 1)[0]
            found.append(OnnxExport(fingerprint, export, _folder_bytes(export), export.stat().st_mtime))
    return found


def cache_info(root: str | Path | None = None) -> CacheInfo:
    """Each model's embedding file (entries, bytes) and each ONNX export (bytes) under ``root``
    (default ``cache_root()``)."""
    root = Path(root or cache_root())
    info = CacheInfo(root, max_bytes=max_cache_bytes())
    for path in sorted(root.glob(_FILE_GLOB)) if root.is_dir() else []:
        db = sqlite3.connect(path, timeout=30)
        try:
            entries = db.execute("SELECT COUNT(*) FROM embedding").fetchone()[0]
        except sqlite3.DatabaseError:  # no table yet, or not a database at all: shown as empty
            entries = 0
        finally:
            db.close()
        info.files.append(CacheFile(_fingerprint_of(path), path, entries, _on_disk(path)))
    info.exports = _exports(root)
    return info


def cache_bytes(root: str | Path | None = None) -> int:
    """The bytes a cache folder's embeddings and ONNX exports take on disk."""
    return cache_info(root).bytes


@dataclass
class PruneReport:
    """What ``prune`` removed, and the folder's size before and after."""

    entries: int = 0
    exports: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


def prune(root: str | Path | None = None, max_bytes: int | None | str = "default") -> PruneReport:
    """Evict the least recently used entries (embeddings and ONNX exports alike) until the cache
    folder takes at most ``max_bytes`` (default ``max_cache_bytes()``; None: nothing to do).

    An entry's size is estimated as its share of its file's live pages (a second pass mends the
    estimate); files that lost rows are vacuumed so the disk gets the space back. Safe beside a
    running build: it only loses what it evicts."""
    root = Path(root or cache_root())
    limit = _limit(max_bytes)
    before = cache_info(root)
    report = PruneReport(bytes_before=before.bytes, bytes_after=before.bytes)
    if limit is None:
        return report
    for _ in range(4):  # each pass removes about what it should; pages and headers make it inexact
        if report.bytes_after <= limit or not _prune_pass(before, limit, report):
            break
        before = cache_info(root)
        report.bytes_after = before.bytes
    if report.entries or report.exports:
        log.info(
            "embedding cache %s: pruned %d entries and %d ONNX exports (%d -> %d bytes, limit %d)",
            root,
            report.entries,
            report.exports,
            report.bytes_before,
            report.bytes_after,
            limit,
        )
    return report


def _prune_pass(before: CacheInfo, limit: int, report: PruneReport) -> bool:
    """Remove the oldest units worth ``before.bytes - limit``; False when there was nothing to remove."""
    removed = report.entries + report.exports
    dbs: dict[Path, sqlite3.Connection] = {}
    for f in before.files:
        db = sqlite3.connect(f.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            _migrate(db, f.path)
            dbs[f.path] = db
        except sqlite3.DatabaseError:  # a damaged file: left for the next build to start afresh
            db.close()
    try:
        streams = []
        for path, db in dbs.items():
            rows = db.execute("SELECT COUNT(*) FROM embedding").fetchone()[0]
            page = db.execute("PRAGMA page_size").fetchone()[0]
            live = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
            live -= _EMPTY_PAGES  # what an empty file keeps: evicting rows does not free it
            streams.append(_oldest_rows(path, max(live, 0) * page / rows if rows else 0.0))
        units = heapq.merge(*streams, ((e.last_used, float(e.bytes), e.path, "") for e in before.exports))
        excess: float = before.bytes - limit
        doomed: dict[Path, list[str]] = {}
        for _, size, path, key in units:
            if excess <= 0:
                break
            excess -= size
            doomed.setdefault(path, []).append(key)
        for stream in streams:
            stream.close()  # end their reads before the deletes and the vacuum
        for path, keys in doomed.items():
            if path in dbs:
                with dbs[path]:
                    dbs[path].executemany("DELETE FROM embedding WHERE key = ?", ((k,) for k in keys))
                report.entries += len(keys)
                try:
                    dbs[path].execute("VACUUM")
                    dbs[path].execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.OperationalError:  # busy in another process: its pages are reused, not returned
                    pass
            else:
                shutil.rmtree(path, ignore_errors=True)
                report.exports += 1
    finally:
        for db in dbs.values():
            db.close()
    return report.entries + report.exports > removed


def _oldest_rows(path: Path, per_row: float) -> Generator[tuple[float, float, Path, str], None, None]:
    cursor = sqlite3.connect(path, timeout=30)  # a second connection: the first deletes while this reads
    try:
        for used, key in cursor.execute("SELECT used, key FROM embedding ORDER BY used"):
            yield used, per_row, path, key
    finally:
        cursor.close()


def clear(root: str | Path | None = None) -> CacheInfo:
    """Remove every embedding file and ONNX export under ``root``; returns what was there."""
    root = Path(root or cache_root())
    info = cache_info(root)
    for f in info.files:
        for p in (f.path, Path(f"{f.path}-wal"), Path(f"{f.path}-shm")):
            p.unlink(missing_ok=True)
    shutil.rmtree(root / "onnx", ignore_errors=True)
    return info

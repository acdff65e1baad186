"""Approximate search: an HNSW graph (faiss ``IndexHNSWFlat``, or ``IndexHNSWSQ`` fp16 for
``dtype=float16``) over inner product.

Why faiss rather than usearch: measured in ``benchmarks/results/hnsw_choice.md`` — faiss's Python
API filters *inside* the graph walk (``SearchParametersHNSW(sel=IDSelectorBitmap)``), which
usearch 2.x's Python API cannot (only post-filtering over-fetched hits), and it opens a saved index
memory-mapped (``IO_FLAG_MMAP_IFC``). faiss's HNSW cannot remove vectors, so deletion is a tombstone
mask applied as the same filter, and the graph is rebuilt from the live rows once more than
``COMPACT_FRACTION`` of its rows are dead.

Filters never cost hits: when few rows pass (``exact_threshold``) they are searched exactly, by
brute force over just those rows; otherwise the filtered graph walk runs and any query that comes
back with fewer than k hits (while k rows qualify) is answered exactly over the passing rows.

Files (``save``): ``hnsw.faiss`` (graph and vectors), ``ids.json`` and ``alive.npy`` (one entry
per graph row, deleted rows included), ``fields.parquet``, ``options.json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import UsageError, VectorIndexError, require
from .base import Fields, Filter, Neighbours
from .where import FieldTable, checked_table

#: Options and their defaults. M 32 / ef_search 128 reach recall@10 >= 0.95 on the 1M benchmark
#: (benchmarks/results/scale.md); ef_construction 100 keeps a 1M build within minutes on 2 cores.
DEFAULTS: dict[str, object] = {"M": 32, "ef_construction": 100, "ef_search": 128, "dtype": "float32"}
#: Allowed ranges of the integer options (faiss accepts more; these are the sane ones).
_RANGES = {"M": (4, 128), "ef_construction": (8, 4096), "ef_search": (1, 4096)}
DTYPES = ("float32", "float16")
#: Rebuild the graph from the live rows once this fraction of its rows is deleted or replaced.
COMPACT_FRACTION = 0.25
#: A filter passing at most this many rows (or this fraction of them) is searched exactly.
EXACT_ROWS = 20_000
#: A filtered graph walk keeps ``ef_search * FILTERED_EF_FACTOR / (fraction passing)`` candidates,
#: at most ``FILTERED_EF_MAX``.
FILTERED_EF_FACTOR = 4
FILTERED_EF_MAX = 2048
EXACT_FRACTION = 0.02


def exact_threshold(n: int) -> int:
    """How many passing rows a filtered search answers by brute force over them, in an index of
    ``n`` rows (a graph walk that must skip ~98% of what it visits is slower, and may fall short)."""
    return max(EXACT_ROWS, int(EXACT_FRACTION * n))


def check_options(options: Mapping[str, object] | None) -> dict[str, object]:
    """The full option set (defaults filled in), or a UsageError naming the bad option."""
    given = dict(options or {})
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise UsageError(
            f"unknown hnsw index option {', '.join(unknown)}; known: "
            + ", ".join(f"{name} (default {value})" for name, value in DEFAULTS.items())
        )
    merged = {**DEFAULTS, **given}
    for name, (low, high) in _RANGES.items():
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise UsageError(f"hnsw index option {name} must be a whole number from {low} to {high}, got {value!r}")
        merged[name] = int(value)
    if merged["dtype"] not in DTYPES:
        raise UsageError(f"hnsw index option dtype must be one of {', '.join(DTYPES)}, got {merged['dtype']!r}")
    return merged


def _faiss() -> Any:
    # an import statement per query was a measurable share of a 0.5 ms search: look it up directly
    faiss = sys.modules.get("faiss")
    return faiss if faiss is not None else require("faiss", "hnsw", "the hnsw index kind")


class HnswIndex:
    """Approximate inner-product search over an HNSW graph (see the module docstring).

    Options: ``M`` (graph connectivity), ``ef_construction`` (candidates kept while building),
    ``ef_search`` (candidates kept while searching; raised to k when k is larger), ``dtype``
    (``float32``, or ``float16`` to store vectors in half the bytes).
    """

    kind: ClassVar[str] = "hnsw"
    #: Checks options before any work (``build_index`` calls it before encoding).
    check_options = staticmethod(check_options)

    def __init__(
        self,
        graph: Any,
        ids: Sequence[str],
        alive: np.ndarray,
        fields: Fields,
        options: Mapping[str, object],
        where: str = "index",
    ):
        self._graph = graph
        self._ids = list(ids)
        self._alive = np.asarray(alive, dtype=bool).copy()
        # one Arrow table, as the exact index keeps them: numpy would turn a missing number into NaN,
        # which SQL compares as larger than every number
        self._fields = FieldTable(checked_table(fields, len(self._ids), where))
        self._options = check_options(options)
        self.dim = int(graph.d)
        self.where = where
        self.mapped = False  # whether the vectors are a read-only map of a file (set by ``load``)
        if not (len(self._ids) == len(self._alive) == graph.ntotal):
            raise VectorIndexError(
                f"{where}: {len(self._ids)} ids and {len(self._alive)} row flags for {graph.ntotal} vectors"
            )
        self._row_of = {doc_id: row for row, doc_id in enumerate(self._ids) if self._alive[row]}
        self._masks: dict[Filter, np.ndarray | None] = {}  # recent filters' row masks (a mask over 1M rows costs ms)
        self._params: dict[int, Any] = {}  # unfiltered search parameters, per ef_search

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: Sequence[str],
        fields: Fields | None = None,
        *,
        options: Mapping[str, object] | None = None,
    ) -> HnswIndex:
        """A graph over ``vectors`` (one row per id), keeping ``fields`` for filters."""
        options = check_options(options)
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise VectorIndexError(f"index: {len(ids)} ids for vectors of shape {vectors.shape}")
        if len(set(ids)) != len(ids):
            raise VectorIndexError("index: the ids are not unique")
        graph = _new_graph(int(vectors.shape[1]), options)
        _add_in_chunks(graph, vectors)
        return cls(graph, ids, np.ones(len(ids), dtype=bool), fields or {}, options)

    @property
    def options(self) -> dict[str, object]:
        """The settings this index was built with (all of them, defaults included)."""
        return dict(self._options)

    @property
    def ef_search(self) -> int:
        """Candidates kept while searching (more: better recall, slower); settable on an open
        index, without a rebuild (``save`` records the new value)."""
        return int(self._options["ef_search"])  # type: ignore[call-overload]

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._options = check_options({**self._options, "ef_search": value})

    # -- what it holds --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._row_of)

    @property
    def ids(self) -> list[str]:
        """The live document ids, in row order."""
        return [doc_id for doc_id, live in zip(self._ids, self._alive) if live]

    @property
    def fields(self) -> dict[str, np.ndarray]:
        """The live documents' fields, in row order."""
        return {name: self._fields[name][self._alive] for name in self._names()}

    def _names(self) -> list[str]:
        return [name for name in self._fields if name != "_rows"]

    def vectors(self) -> np.ndarray:
        """The stored vectors of every graph row (deleted ones too): a read-only view into the
        index (float16 when ``dtype=float16``), valid until the index next changes."""
        faiss = _faiss()
        storage = faiss.downcast_index(self._graph.storage)
        n = self._graph.ntotal
        dtype = np.float16 if self._options["dtype"] == "float16" else np.float32
        if n == 0:
            return np.zeros((0, self.dim), dtype=dtype)
        codes = faiss.rev_swig_ptr(storage.codes.data(), n * storage.code_size)
        view = np.asarray(codes).view(dtype).reshape(n, self.dim)
        view.flags.writeable = False
        return view

    # -- changes --------------------------------------------------------------------------------

    def add(self, vectors: np.ndarray, ids: Sequence[str], fields: Fields | None = None) -> None:
        """Add documents; an id already present is replaced (its old row becomes a tombstone)."""
        import pyarrow as pa

        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        ids = list(ids)
        if vectors.shape[1] != self.dim or len(vectors) != len(ids):
            raise VectorIndexError(f"{self.where}: cannot add {len(ids)} ids with vectors of shape {vectors.shape}")
        if len(set(ids)) != len(ids):
            raise VectorIndexError(f"{self.where}: the added ids are not unique")
        if not set(self._names()) <= set(fields or {}):
            raise VectorIndexError(f"{self.where}: added documents need the fields {sorted(self._names())}")
        added = checked_table(fields or {}, len(ids), self.where)
        self._tombstone(ids)
        if self.mapped:  # faiss cannot grow a mapped vector array: take an owned copy first
            faiss = _faiss()
            self._graph = faiss.deserialize_index(faiss.serialize_index(self._graph))
            self.mapped = False
        start = self._graph.ntotal
        _add_in_chunks(self._graph, vectors)
        self._ids += ids
        self._alive = np.concatenate([self._alive, np.ones(len(ids), dtype=bool)])
        table = pa.concat_tables([self._fields.arrow, added], promote_options="permissive")
        if "_rows" in table.column_names and len(table.column_names) > 1:
            table = table.drop_columns(["_rows"])
        self._fields = FieldTable(table)
        self._row_of.update({doc_id: start + i for i, doc_id in enumerate(ids)})
        self._masks.clear()
        self._compact_if_sparse()

    def delete(self, ids: Iterable[str]) -> int:
        """Remove documents by id; returns how many were present."""
        removed = self._tombstone(ids)
        if removed:
            self._compact_if_sparse()
        return removed

    def _tombstone(self, ids: Iterable[str]) -> int:
        self._masks.clear()
        rows = [self._row_of.pop(doc_id) for doc_id in set(ids) if doc_id in self._row_of]
        self._alive[rows] = False
        return len(rows)

    def _compact_if_sparse(self) -> None:
        """Rebuild the graph from the live rows once too many are dead: every search walks past
        dead rows, so a mostly dead graph is slow and its recall drops."""
        total = len(self._ids)
        if total == 0 or (total - len(self)) <= COMPACT_FRACTION * total:
            return
        live = np.flatnonzero(self._alive)
        vectors = self.vectors()
        graph = _new_graph(self.dim, self._options)
        _add_in_chunks(graph, vectors, rows=live)
        self._graph, self.mapped = graph, False
        self._ids = [self._ids[r] for r in live]
        self._alive = np.ones(len(live), dtype=bool)
        self._fields = FieldTable(self._fields.arrow.take(live))
        self._row_of = {doc_id: row for row, doc_id in enumerate(self._ids)}
        self._masks.clear()

    # -- search ---------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int = 10, filter: Filter | None = None) -> Neighbours:
        """The ``k`` best live documents per query, best first, allowed by ``filter``; never fewer
        than ``k`` when ``k`` documents qualify."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise VectorIndexError(
                f"query dimension {queries.shape[1]} does not match the {self.where}'s {self.dim}: "
                "was it built with another model?"
            )
        total, q, live = len(self._ids), len(queries), len(self._row_of)
        k = max(0, min(int(k), live))
        if filter is None and live == total and k and q:
            # the common case, kept thin (one graph walk, faiss's arrays as they come): a Python
            # step here costs as much as a fraction of the walk itself
            scores, rows = self._walk(queries, k, None)
            if (rows < 0).any():
                return self._completed(queries, k, scores, rows, None, live)
            return self._neighbours(scores, rows)
        allowed = None if filter is None else self._mask(filter)
        if allowed is None and live < total:
            allowed = self._alive
        passing = live if allowed is None else int(allowed.sum())
        if k == 0 or q == 0 or passing == 0:
            return self._neighbours(np.full((q, k), -np.inf, dtype=np.float32), np.full((q, k), -1, dtype=np.int64))
        if allowed is not None and passing <= exact_threshold(total):
            return self._neighbours(*self._exact(queries, k, np.flatnonzero(allowed)))
        found_scores, found_rows = self._walk(queries, k, allowed, passing / total)
        return self._completed(queries, k, found_scores, found_rows, allowed, passing)

    def _completed(
        self,
        queries: np.ndarray,
        k: int,
        found_scores: np.ndarray,
        found_rows: np.ndarray,
        allowed: np.ndarray | None,
        passing: int,
    ) -> Neighbours:
        """A walk's hits padded to ``k``; a query the walk left short of ``min(k, passing)`` hits is
        answered exactly over the passing rows."""
        q = len(queries)
        scores = np.full((q, k), -np.inf, dtype=np.float32)
        rows = np.full((q, k), -1, dtype=np.int64)
        scores[:, : found_scores.shape[1]], rows[:, : found_rows.shape[1]] = found_scores, found_rows
        short = np.flatnonzero((rows >= 0).sum(axis=1) < min(k, passing))
        if len(short):  # the walk could not reach k passing rows: answer those queries exactly
            subset = np.flatnonzero(allowed) if allowed is not None else np.arange(len(self._ids))
            scores[short], rows[short] = self._exact(queries[short], k, subset)
        return self._neighbours(scores, rows)

    def _mask(self, filter: Filter) -> np.ndarray | None:
        """The live rows ``filter`` passes (None: all rows, none dead), cached until the next change."""
        if filter not in self._masks:
            mask = filter.mask(self._fields, len(self._ids))
            if len(self._masks) >= 16:
                self._masks.pop(next(iter(self._masks)))
            self._masks[filter] = (
                (None if len(self) == len(self._ids) else self._alive)
                if mask is None
                else np.asarray(mask, dtype=bool) & self._alive
            )
        return self._masks[filter]

    def _walk(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, fraction: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        ef_search = max(int(self._options["ef_search"]), k)  # type: ignore[call-overload]
        if allowed is not None:
            # A filtered walk keeps only passing rows, and the passing rows nearest a query may lie
            # far from where the walk starts (image documents for a text query: the modality gap).
            # More candidates, in proportion to what the filter drops, keep its recall up
            # (benchmarks/results/scale.md: 0.58 -> 0.99 recall@10 for an image filter at 200k).
            ef_search = min(FILTERED_EF_MAX, int(np.ceil(ef_search * FILTERED_EF_FACTOR / max(fraction, 1e-9))))
        if allowed is None:
            params = self._params.get(ef_search)
            if params is None:  # made once per ef_search: building one costs as much as the id lookup
                params = self._params[ef_search] = faiss.SearchParametersHNSW(efSearch=ef_search)
        else:
            bitmap = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))
            params = faiss.SearchParametersHNSW(efSearch=ef_search, sel=selector)
        distances, rows = self._graph.search(queries, k, params=params)
        missing = rows < 0
        if missing.any():
            distances[missing] = -np.inf
        return distances.astype(np.float32, copy=False), rows.astype(np.int64, copy=False)

    def _exact(self, queries: np.ndarray, k: int, subset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over ``subset`` (graph rows), in chunks: ``(scores, rows)`` padded to ``k``."""
        vectors = self.vectors()
        q = len(queries)
        scores = np.full((q, k), -np.inf, dtype=np.float32)
        rows = np.full((q, k), -1, dtype=np.int64)
        chunk = max(1024, (64 << 20) // (4 * (q + self.dim)))
        for start in range(0, len(subset), chunk):
            part = subset[start : start + chunk]
            block = queries @ np.asarray(vectors[part], dtype=np.float32).T
            both_scores = np.concatenate([scores, block], axis=1)
            both_rows = np.concatenate([rows, np.broadcast_to(part, block.shape)], axis=1)
            top = np.argpartition(-both_scores, k - 1, axis=1)[:, :k] if both_scores.shape[1] > k else None
            if top is not None:
                both_scores = np.take_along_axis(both_scores, top, axis=1)
                both_rows = np.take_along_axis(both_rows, top, axis=1)
            order = np.lexsort((both_rows, -both_scores), axis=1)[:, :k]
            scores = np.take_along_axis(both_scores, order, axis=1)
            rows = np.take_along_axis(both_rows, order, axis=1)
        rows[~np.isfinite(scores)] = -1
        return scores, rows

    def _neighbours(self, scores: np.ndarray, rows: np.ndarray) -> Neighbours:
        ids = [[self._ids[r] for r in row if r >= 0] for row in rows.tolist()]  # Python ints: faster lookups
        return Neighbours(scores, ids)

    # -- files ----------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write ``hnsw.faiss``, ``ids.json``, ``alive.npy``, ``fields.parquet`` and ``options.json``."""
        import pyarrow.parquet as pq

        faiss = _faiss()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._graph, str(folder / "hnsw.faiss"))
        (folder / "ids.json").write_text(json.dumps(self._ids))
        np.save(folder / "alive.npy", self._alive)
        pq.write_table(self._fields.arrow, folder / "fields.parquet")
        (folder / "options.json").write_text(json.dumps(self._options))

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> HnswIndex:
        """Open a saved index; its vectors are memory-mapped unless ``mmap=False`` (a change
        copies what it touches into memory; the files are never written)."""
        import pyarrow.parquet as pq

        faiss = _faiss()
        folder = Path(folder)
        try:
            options = json.loads((folder / "options.json").read_text())
            ids = json.loads((folder / "ids.json").read_text())
            alive = np.load(folder / "alive.npy")
            table = pq.ParquetFile(folder / "fields.parquet").read()  # not read_table: it imports pandas
            flags = faiss.IO_FLAG_MMAP_IFC if mmap else 0  # maps the vectors (IO_FLAG_MMAP alone reads them)
            graph = faiss.read_index(str(folder / "hnsw.faiss"), flags)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, RuntimeError) as err:
            raise VectorIndexError(f"{folder}: unreadable hnsw index ({err})") from None
        index = cls(graph, ids, alive, FieldTable(table), options, where=f"index at {folder}")
        index.mapped = mmap
        return index


def _new_graph(dim: int, options: Mapping[str, Any]) -> Any:
    faiss = _faiss()
    if options["dtype"] == "float16":
        graph = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, options["M"], faiss.METRIC_INNER_PRODUCT)
        graph.train(np.zeros((1, dim), dtype=np.float32))  # fp16 needs no statistics
    else:
        graph = faiss.IndexHNSWFlat(dim, options["M"], faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = options["ef_construction"]
    return graph


def _add_in_chunks(graph: Any, vectors: np.ndarray, rows: np.ndarray | None = None, chunk: int = 65_536) -> None:
    """Add ``vectors`` (or just its ``rows``) a chunk at a time, so a memory-mapped or float16
    source is never copied whole."""
    n = len(vectors) if rows is None else len(rows)
    for start in range(0, n, chunk):
        part = vectors[start : start + chunk] if rows is None else vectors[rows[start : start + chunk]]
        graph.add(np.ascontiguousarray(part, dtype=np.float32))

"""Exact search: inner product (cosine, as vectors are normalised) against every stored vector.

Scores are computed in chunks, so memory stays bounded however many documents there are, with
a running top-k; the product is the kernel measured fastest for the shape (``KERNELS``: numpy's
matrix-vector product for one query, which needs no torch at all; for batches, whichever of numpy
and torch this machine scores chunks faster with, measured on the first chunks a process searches).
Vectors may be memory-mapped from disk, in several parts (one per build or add), stored as float32
or float16 (index option ``dtype``; scores are computed in float32 either way, float16 converted a
chunk at a time). Deleted rows stay in their part, masked, until the engine compacts the index.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from ..errors import UsageError, VectorIndexError
from .base import Fields, Filter, Neighbours, positions_of
from .where import FieldTable, arrow_table, checked_table

#: Storage types of the vectors (option ``dtype``): float16 halves memory and disk.
DTYPES = {"float32": np.float32, "float16": np.float16}

#: Bytes one chunk of a search may allocate — its scores (queries x rows) and, for vectors that are
#: not float32 already, its float32 copy of the rows — so memory stays bounded whatever the corpus size.
SCORE_BUDGET = 64 << 20


def chunk_rows(n_queries: int, dim: int, copies_rows: bool = False) -> int:
    """Rows per chunk for ``n_queries`` queries within ``SCORE_BUDGET`` (``copies_rows``: each
    row of dimension ``dim`` is also copied to float32)."""
    return max(256, SCORE_BUDGET // (4 * (n_queries + (dim if copies_rows else 0))))


#: The matrix product that scores a chunk, per shape: "numpy", "torch", or "auto" (measured, see
#: ``KernelProbe``). One query: numpy's matrix-vector product (BLAS sgemv) streams the rows at ~the
#: memory bandwidth where torch's took 1.5-1.9x as long, on both CPUs measured (AMD EPYC, Intel Xeon;
#: benchmarks/results/issue19.md), and it needs no torch import. Batches: the faster one differs by
#: machine (numpy's sgemm 1.07x faster on the EPYC, torch's mm 1.55x faster on the Xeon), so it is
#: measured. Set per index (``index.kernels = {"single": "numpy", "batch": "torch"}``) or per process
#: (``$MIXSEARCH_EXACT_KERNEL``, see ``default_kernels``); results are the same.
KERNELS: dict[str, str] = {"single": "numpy", "batch": "auto"}
SCORERS = ("numpy", "torch")
KERNEL_ENV = "MIXSEARCH_EXACT_KERNEL"
#: Chunks each kernel scores, alternately, before the faster (best chunk, per row) is kept.
PROBE_CHUNKS = 3


def default_kernels() -> dict[str, str]:
    """``KERNELS``, overridden by ``$MIXSEARCH_EXACT_KERNEL``: one name for batches (``torch``,
    ``numpy`` or ``auto``), or per shape, ``batch=torch,single=numpy``."""
    kernels = dict(KERNELS)
    value = os.environ.get(KERNEL_ENV, "").strip()
    if not value:
        return kernels
    for item in value.split(","):
        shape, _, name = item.rpartition("=")
        shape, name = shape.strip() or "batch", name.strip()
        if shape not in kernels or name not in (*SCORERS, "auto"):
            raise UsageError(
                f"${KERNEL_ENV} must be numpy, torch or auto, or e.g. batch=torch,single=numpy; got {value!r}"
            )
        kernels[shape] = name
    return kernels


class KernelProbe:
    """Which kernel scores one class of chunks fastest on this machine, measured on the search's own
    chunks: the first ones of the class are scored by each candidate in turn (A, B, A, B, ...), timed
    with their top-k (the product alone misleads: numpy's sgemm measured 1.45x faster than torch's mm
    over an 8k-row chunk here, but 1.35x slower over the real 168k-row chunks followed by torch's
    top-k), and after ``PROBE_CHUNKS`` each the one with the fastest chunk per row is kept. The probe
    costs no extra scoring, only the slower kernel's time on a few chunks."""

    def __init__(self, candidates: Sequence[str]):
        self.seconds: dict[str, list[float]] = {c: [] for c in candidates}
        self.choice: str | None = candidates[0] if len(candidates) == 1 else None

    def next(self) -> str:
        """The kernel for the next chunk: the choice once made, else the least-timed candidate."""
        if self.choice is not None:
            return self.choice
        return min(self.seconds, key=lambda c: len(self.seconds[c]))

    def record(self, kernel: str, seconds_per_row: float) -> None:
        """One chunk scored by ``kernel`` (with its top-k) took ``seconds_per_row`` per row."""
        with _PROBE_LOCK:
            if self.choice is not None:
                return
            self.seconds[kernel].append(seconds_per_row)
            if all(len(v) >= PROBE_CHUNKS for v in self.seconds.values()):
                self.choice = min(self.seconds, key=lambda c: min(self.seconds[c]))

    def describe(self) -> str:
        """What was measured, for ``ExactIndex.kernel`` and the benchmark's notes."""
        per_100k = ", ".join(f"{c} {min(v) * 1e8:.1f} ms" for c, v in self.seconds.items() if v)
        if len(self.seconds) == 1:
            return "only candidate (torch not loaded)"
        if self.choice is None:
            return f"measuring ({per_100k or 'no chunk yet'} per 100k rows so far)"
        return f"measured here, fastest of {PROBE_CHUNKS} chunks each: {per_100k} per 100k rows"


#: Probes of this process, per class of chunk: (shape, queries, dim, float16, rows), the counts
#: rounded to powers of two.
_PROBES: dict[tuple, KernelProbe] = {}
_PROBE_LOCK = threading.Lock()
_clock = time.perf_counter  # a name of its own, so a test can time chunks by a fake clock


def probe_for(shape: str, n_queries: int, dim: int, half: bool, rows: int) -> KernelProbe:
    """This process's probe for chunks of ``rows`` rows scored against ``n_queries`` queries."""
    key = (shape, n_queries.bit_length(), dim, half, rows.bit_length())
    with _PROBE_LOCK:
        probe = _PROBES.get(key)
        if probe is None:
            # torch only where it is loaded already (batches' top-k imports it anyway): a single
            # query must never import torch (tests/test_query_path.py)
            torch_ok = shape == "batch" or "torch" in sys.modules
            probe = _PROBES[key] = KernelProbe(SCORERS if torch_ok and _has_torch() else ("numpy",))
        return probe


def forget_probes() -> None:
    """Drop this process's measurements (the next chunks are probed again)."""
    with _PROBE_LOCK:
        _PROBES.clear()


def _has_torch() -> bool:
    import importlib.util

    return "torch" in sys.modules or importlib.util.find_spec("torch") is not None


#: How each chunk's top k is picked: one query, numpy's argpartition (no torch import at all);
#: batches, torch's top-k (~2x numpy's argpartition over a (100, rows) block, and no negated copy).
TOP_K = {"single": "numpy argpartition", "batch": "torch topk"}
#: float16 rows are converted to float32 a chunk at a time (``chunk_rows(..., copies_rows=True)``),
#: by torch, into one reused buffer, then scored as float32 rows are: scoring float16 directly
#: (half-precision GEMM) was ~3x slower on this CPU. At most ``HALF_ROWS`` rows per chunk.
HALF_ROWS = 1 << 20
#: One query over float16 rows is scored in half precision (``_search_half_single``); each chunk
#: keeps this many times k candidates for the float32 rescoring, so half-precision rounding of
#: near-equal scores cannot push a true top-k row out.
HALF_CANDIDATES = 4


def _product(kernel: str):
    """``product(queries, rows, out)``: ``out[:] = queries @ rows.T`` by ``kernel``, float32."""
    if kernel not in SCORERS:
        raise UsageError(f"exact scoring kernel must be one of {', '.join(SCORERS)}, got {kernel!r}")
    if kernel == "numpy":

        def product(queries: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
            if len(queries) == 1:  # matrix-vector: BLAS sgemv reads the rows once, at the bandwidth
                np.matmul(rows, queries[0], out=out[0])
            else:
                np.matmul(queries, rows.T, out=out)

        return product
    import torch

    def product_torch(queries: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
        torch.mm(_tensor(queries), _tensor(rows).T, out=_tensor(out))

    return product_torch


def _tensor(array: np.ndarray):
    """A torch view of ``array``, no copy (memory maps are read-only, which torch only warns about:
    nothing here writes to them)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(array))


def _scorer(queries: np.ndarray, half: bool, rows: int):
    """``score(block, kernel) -> (n_queries, len(block))`` float32 scores of a chunk of at most
    ``rows`` stored rows (a fresh, writable array). float16 chunks are first converted, whole, into
    one float32 buffer reused for every chunk: one conversion and one product per chunk, as few
    multi-threaded calls as the float32 path (many small ones stall when the cores are shared)."""
    products: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], None]] = {}
    buffer = np.empty((rows, queries.shape[1]), dtype=np.float32) if half else None

    def score(block: np.ndarray, kernel: str) -> np.ndarray:
        product = products.get(kernel) or products.setdefault(kernel, _product(kernel))
        out = np.empty((len(queries), len(block)), dtype=np.float32)
        if buffer is None:
            product(queries, np.ascontiguousarray(block), out)
        else:
            converted = buffer[: len(block)]
            _tensor(converted).copy_(_tensor(block))  # torch's float16 conversion: ~6x numpy's here
            product(queries, converted, out)
        return out

    return score


def _best(cand_scores: np.ndarray, cand_rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best candidates per query, best first; among equal scores, lower rows first (the
    same answer however the rows were chunked)."""
    order = np.lexsort((cand_rows, -cand_scores), axis=1)[:, :k]
    best_scores = np.take_along_axis(cand_scores, order, axis=1)
    best_rows = np.take_along_axis(cand_rows, order, axis=1)
    best_rows[~np.isfinite(best_scores)] = -1
    return best_scores, best_rows


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best ``(scores, columns)`` of each row of ``scores``, in no particular order."""
    n = scores.shape[1]
    if len(scores) == 1:
        top = np.argpartition(scores[0], n - k)[n - k :] if k < n else np.arange(n)
        return scores[:, top], top[None].astype(np.int64)
    import torch

    top_scores, top_rows = torch.topk(torch.from_numpy(scores), k, dim=1)
    return top_scores.numpy(), top_rows.numpy()


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (no bytes copied), or a copy where links fail."""
    if Path(source).resolve() == Path(target).resolve():
        return
    Path(target).unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _whole_npy(array: np.ndarray) -> Path | None:
    """The ``.npy`` file ``array`` maps whole (so it can be linked, not rewritten), or None."""
    name = getattr(array, "filename", None)
    if not isinstance(array, np.memmap) or not name or not str(name).endswith(".npy"):
        return None
    try:
        on_disk = np.load(name, mmap_mode="r")
    except (OSError, ValueError):
        return None
    same = on_disk.shape == array.shape and on_disk.dtype == array.dtype and on_disk.offset == array.offset
    return Path(name) if same and array.flags.c_contiguous else None


@dataclass
class _Part:
    """Rows written together (a build, or one add): their vectors and the files they came from."""

    name: str
    vectors: np.ndarray
    source: dict[str, Path] | None = None  # {"vectors", "ids", "fields"} when loaded from disk


def _dtype_of(options: Mapping[str, object] | None) -> str:
    options = dict(options or {})
    dtype = options.pop("dtype", "float32")
    if options:
        raise UsageError(f"the exact index takes only the option dtype (got {', '.join(sorted(options))})")
    if dtype not in DTYPES:
        raise UsageError(f"index option dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return str(dtype)


class ExactIndex:
    """Exact inner-product search over ``(n, d)`` vectors (in memory or memory-mapped, in parts).

    Files (``save``): ``parts.json`` (dtype, and each part's name and rows), per part
    ``<part>.vectors.npy``, ``<part>.ids.json`` and ``<part>.fields.parquet`` (the filterable
    fields), and ``deleted.npy`` (rows deleted, by position over all parts) when any are. Parts
    already on disk are hard-linked into a new folder, so saving after an add writes only the new
    part. The older one-part layout (``vectors.npy``, ``ids.json``, ``fields.parquet``) still loads.
    """

    kind: ClassVar[str] = "exact"

    def __init__(
        self,
        vectors: np.ndarray,
        ids: Sequence[str],
        fields: Fields | None = None,
        where: str = "index",
        *,
        dtype: str = "float32",
    ):
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise VectorIndexError(f"{where}: {len(ids)} ids for vectors of shape {vectors.shape}")
        self._dtype = np.dtype(DTYPES[_dtype_of({"dtype": dtype})])
        if vectors.dtype != self._dtype:
            vectors = _cast(vectors, self._dtype)
        self.where = where
        self.dim = int(vectors.shape[1])
        self._parts = [_Part("0", vectors)]
        self._ids = list(ids)
        self._table = checked_table(fields or {}, len(self._ids), self.where)
        self._deleted: np.ndarray | None = None
        self._id_column = None  # the ids as Arrow, built on the first delete (lookups by id are vectorised)
        #: The scoring product per shape ("single" query, "batch"): "numpy", "torch" or "auto" (see ``KERNELS``).
        self.kernels = default_kernels()
        self._forget()

    def snapshot(self) -> ExactIndex:
        """A copy to change (``add``, ``delete``, ``save``) while this one stays as it was: the
        vectors and files are shared (never written to), the lists and masks that a change
        alters are copied, which costs far less than loading the index again."""
        other = copy.copy(self)
        other._parts = [dataclasses.replace(p) for p in self._parts]  # save() records each part's files
        other._ids = list(self._ids)
        other._deleted = None if self._deleted is None else self._deleted.copy()
        other.kernels = dict(self.kernels)
        return other

    def _ids_arrow(self):
        """The stored ids (deleted rows too) as an Arrow column, kept across adds."""
        import pyarrow as pa

        if self._id_column is None:
            self._id_column = pa.chunked_array([pa.array(self._ids, pa.string())], pa.string())
        return self._id_column

    def _forget(self) -> None:
        """Drop what is derived from the rows (recomputed on demand)."""
        self._live_rows: np.ndarray | None = None
        self._live_ids: list[str] | None = None
        self._search_fields: FieldTable | None = None

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: Sequence[str],
        fields: Fields | None = None,
        *,
        options: Mapping[str, object] | None = None,
    ) -> ExactIndex:
        """An index over ``vectors`` (one row per id). Option ``dtype``: ``float32`` (default) or
        ``float16`` (half the bytes; scores still computed in float32)."""
        dtype = _dtype_of(options)
        if not isinstance(vectors, np.ndarray):
            vectors = np.asarray(vectors, dtype=np.float32)
        return cls(vectors, ids, fields, dtype=dtype)

    @property
    def options(self) -> dict[str, object]:
        """``{"dtype": "float16"}`` for half-precision storage; nothing for the float32 default."""
        return {} if self._dtype == np.float32 else {"dtype": str(self._dtype)}

    @property
    def dtype(self) -> np.dtype:
        """How the vectors are stored (float32 or float16)."""
        return self._dtype

    # -- rows ----------------------------------------------------------------------------------

    def _live(self) -> np.ndarray | None:
        """Positions (over all parts) of the rows not deleted; None when none is."""
        if self._deleted is None or not self._deleted.any():
            return None
        if self._live_rows is None:
            self._live_rows = np.flatnonzero(~self._deleted)
        return self._live_rows

    @property
    def ids(self) -> list[str]:
        """The ids of the documents held, in row order."""
        live = self._live()
        if live is None:
            return self._ids
        if self._live_ids is None:
            self._live_ids = [self._ids[r] for r in live]
        return self._live_ids

    @property
    def fields(self) -> FieldTable:
        """The filterable fields of the documents held, in row order."""
        live = self._live()
        return FieldTable(self._table if live is None else self._table.take(live))

    def _stored_rows(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors at ``rows`` (positions over all parts; any shape), as stored."""
        flat = np.clip(rows.ravel(), 0, None)
        starts = np.cumsum([0] + [len(p.vectors) for p in self._parts])
        out = np.empty((len(flat), self.dim), dtype=self._dtype)
        which = np.searchsorted(starts, flat, side="right") - 1
        for i, part in enumerate(self._parts):
            here = which == i
            if here.any():
                out[here] = part.vectors[flat[here] - starts[i]]
        return out.reshape(*rows.shape, self.dim)

    @property
    def vectors(self) -> np.ndarray:
        """The stored vectors of the documents held (the memory map itself when there is one part
        and nothing deleted; otherwise a copy)."""
        live = self._live()
        if len(self._parts) == 1 and live is None:
            return self._parts[0].vectors
        stacked = np.concatenate([np.asarray(p.vectors) for p in self._parts])
        return stacked if live is None else stacked[live]

    def __len__(self) -> int:
        live = self._live()
        return len(self._ids) if live is None else len(live)

    # -- changes -------------------------------------------------------------------------------

    def add(self, vectors: np.ndarray, ids: Sequence[str], fields: Fields | None = None) -> None:
        """Append documents as a new part; ids already present are replaced (their old rows are
        marked deleted). ``fields`` must hold every field the index has (it may bring new ones)."""
        import pyarrow as pa

        vectors = np.atleast_2d(np.asarray(vectors))
        if vectors.shape[1] != self.dim or len(vectors) != len(ids):
            raise VectorIndexError(f"{self.where}: cannot add {len(ids)} ids with vectors of shape {vectors.shape}")
        have = {n for n in self._table.column_names if n != "_rows"}
        if not have <= set(fields or {}):
            raise VectorIndexError(f"{self.where}: added documents need the fields {sorted(have)}")
        added = checked_table(fields or {}, len(ids), self.where)
        self.delete(ids)
        names = [int(p.name) for p in self._parts if p.name.isdigit()]
        self._parts.append(_Part(str(max(names, default=-1) + 1), _cast(vectors, self._dtype)))
        if self._id_column is not None:
            self._id_column = pa.chunked_array([*self._id_column.chunks, pa.array(list(ids), pa.string())])
        self._ids += list(ids)
        self._table = pa.concat_tables([self._table, added], promote_options="permissive")
        if "_rows" in self._table.column_names and len(self._table.column_names) > 1:
            self._table = self._table.drop_columns(["_rows"])
        if self._deleted is not None:
            self._deleted = np.concatenate([self._deleted, np.zeros(len(ids), dtype=bool)])
        self._forget()

    def delete(self, ids: Iterable[str]) -> int:
        """Remove documents by id (their rows are masked, not rewritten); returns how many were present."""
        found = positions_of(self._ids_arrow(), set(ids))
        gone = found if self._deleted is None else found[~self._deleted[found]]  # live rows only
        if len(gone):
            if self._deleted is None:
                self._deleted = np.zeros(len(self._ids), dtype=bool)
            self._deleted[gone] = True
            self._forget()
        return len(gone)

    # -- search --------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int = 10, filter: Filter | None = None) -> Neighbours:
        """Top-``k`` documents per query, best first, among those ``filter`` allows (the filter
        is applied before the top-k: k hits come back whenever k documents qualify)."""
        allowed = None
        if filter is not None:
            if self._search_fields is None:
                self._search_fields = FieldTable(self._table)
            allowed = filter.mask(self._search_fields, len(self._ids))
        if self._live() is not None:
            allowed = ~self._deleted if allowed is None else allowed & ~self._deleted  # type: ignore[operator]
        scores, rows = self._search_all(queries, k, allowed)
        ids = [[self._ids[r] for r in row if r >= 0] for row in rows]
        return Neighbours(scores, ids)

    def search_rows(self, queries: np.ndarray, k: int = 10, allowed: np.ndarray | None = None):
        """Top-``k`` rows per query: ``(scores, rows)``, both ``(n_queries, k)``, best first.

        ``allowed`` is an optional boolean mask over rows; rows not allowed are never returned.
        Where fewer than ``k`` rows qualify, the tail holds row ``-1`` and score ``-inf``.
        Results are repeatable for the same inputs; rows tied exactly at the k-th score may be
        cut in any order (among returned rows, ties are listed by row order).
        """
        live = self._live()
        if live is None:
            return self._search_all(queries, k, allowed)
        everywhere = ~self._deleted  # type: ignore[operator]
        if allowed is not None:
            everywhere[live] &= np.asarray(allowed, dtype=bool)
        scores, rows = self._search_all(queries, min(k, len(live)), everywhere)
        return scores, np.where(rows >= 0, np.searchsorted(live, rows), -1)

    def kernel(self, n_queries: int) -> dict[str, str]:
        """The kernels a search of ``n_queries`` queries uses: ``{"scores": ..., "chosen": ...,
        "top_k": ..., "convert": ...}`` (``convert`` only for float16 storage); ``chosen`` says
        whether the product was pinned or measured (``KernelProbe``, for full-size chunks)."""
        shape = "single" if n_queries == 1 else "batch"
        if self._dtype == np.float16 and shape == "single":
            return {"scores": "torch half precision, candidates rescored in float32", "top_k": "torch topk"}
        half = self._dtype == np.float16
        rows = self._chunk_rows(n_queries)
        kernel = self.kernels[shape]
        if kernel == "auto":
            probe = probe_for(shape, n_queries, self.dim, half, min(rows, len(self._ids)))
            chosen = {"scores": probe.choice or "auto", "chosen": probe.describe()}
        else:
            chosen = {"scores": kernel, "chosen": f"set (KERNELS, index.kernels or ${KERNEL_ENV})"}
        chosen["top_k"] = TOP_K[shape]
        if half:
            chosen["convert"] = f"torch, {rows} rows at a time into a float32 buffer"
        return chosen

    def _chunk_rows(self, n_queries: int) -> int:
        half = self._dtype == np.float16
        rows = chunk_rows(n_queries, self.dim, copies_rows=half)
        return min(rows, HALF_ROWS) if half else rows

    def _search_all(self, queries: np.ndarray, k: int, allowed: np.ndarray | None):
        """``search_rows`` over every stored row (deleted ones too, unless ``allowed`` masks them)."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise VectorIndexError(
                f"query dimension {queries.shape[1]} does not match the {self.where}'s {self.dim}: "
                "was it built with another model?"
            )
        n, q = len(self._ids), len(queries)
        k = max(0, min(k, n))
        if k == 0 or q == 0:
            return np.full((q, k), -np.inf, dtype=np.float32), np.full((q, k), -1, dtype=np.int64)
        queries = np.ascontiguousarray(queries)
        half = self._dtype == np.float16
        if half and q == 1:
            return self._search_half_single(queries, k, allowed)
        rows = self._chunk_rows(q)
        shape = "single" if q == 1 else "batch"
        pinned = self.kernels[shape]
        if pinned not in (*SCORERS, "auto"):
            raise UsageError(f"exact scoring kernel must be one of {', '.join(SCORERS)} or auto, got {pinned!r}")
        score = _scorer(queries, half, rows)
        found_scores, found_rows = [], []
        offset = 0
        for part in self._parts:
            for start in range(0, len(part.vectors), rows):
                block = part.vectors[start : start + rows]
                probe = None if pinned != "auto" else probe_for(shape, q, self.dim, half, len(block))
                kernel = pinned if probe is None else probe.next()
                began = _clock()
                scores = score(block, kernel)
                first = offset + start
                if allowed is not None:
                    scores[:, ~allowed[first : first + scores.shape[1]]] = -np.inf
                top_scores, top_rows = _top_k(scores, min(k, scores.shape[1]))
                if probe is not None and probe.choice is None:
                    probe.record(kernel, (_clock() - began) / max(1, len(block)))
                found_scores.append(top_scores)
                found_rows.append(top_rows + first)
            offset += len(part.vectors)
        cand_scores, cand_rows = np.concatenate(found_scores, axis=1), np.concatenate(found_rows, axis=1)
        return _best(cand_scores, cand_rows, k)

    def _search_half_single(self, queries: np.ndarray, k: int, allowed: np.ndarray | None):
        """One query over float16 rows: torch's half-precision product over the rows as stored (it
        reads half the bytes: faster than float32 for one query, where converting was ~6x slower),
        the candidates then rescored exactly in float32, as a float32 index scores them."""
        import torch

        query = torch.from_numpy(queries).half()
        rows = chunk_rows(1, self.dim)
        found_scores, found_rows = [], []
        offset = 0
        for part in self._parts:
            for start in range(0, len(part.vectors), rows):
                block = _tensor(part.vectors[start : start + rows])
                scores = query @ block.T
                first = offset + start
                if allowed is not None:
                    scores.masked_fill_(torch.from_numpy(~allowed[first : first + len(block)]), -np.inf)
                top_scores, top_rows = torch.topk(scores, min(k * HALF_CANDIDATES, scores.shape[1]), dim=1)
                found_scores.append(top_scores.float().numpy())
                found_rows.append(top_rows.numpy() + first)
            offset += len(part.vectors)
        cand_scores, cand_rows = np.concatenate(found_scores, axis=1), np.concatenate(found_rows, axis=1)
        exact = np.einsum("qd,qcd->qc", queries, self._stored_rows(cand_rows).astype(np.float32))
        cand_scores = np.where(np.isfinite(cand_scores), exact, cand_scores).astype(np.float32)
        return _best(cand_scores, cand_rows, k)

    # -- files ---------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write the index into ``folder``: parts already on disk are hard-linked (or copied where
        links fail), new parts written; ``parts.json`` last."""
        import pyarrow.parquet as pq

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        offset, listed = 0, []
        for part in self._parts:
            names = {role: folder / f"{part.name}.{role}{ext}" for role, ext in _PART_FILES.items()}
            count = len(part.vectors)
            if part.source is not None:
                for role, target in names.items():
                    link_or_copy(part.source[role], target)
            else:
                mapped = _whole_npy(part.vectors)
                if mapped is not None:  # a memory map of a whole file (a build's fused vectors): link it
                    link_or_copy(mapped, names["vectors"])
                else:
                    np.save(names["vectors"], np.asarray(part.vectors))
                names["ids"].write_text(json.dumps(self._ids[offset : offset + count]))
                pq.write_table(self._table.slice(offset, count), names["fields"])
            part.source = names
            listed.append({"name": part.name, "rows": count})
            offset += count
        deleted = folder / "deleted.npy"
        if self._live() is not None:
            np.save(deleted, np.flatnonzero(np.asarray(self._deleted)).astype(np.int64))
        else:
            deleted.unlink(missing_ok=True)
        (folder / "parts.json").write_text(json.dumps({"dtype": str(self._dtype), "parts": listed}))

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> ExactIndex:
        """Open a saved index; vectors are memory-mapped unless ``mmap=False``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = Path(folder)
        mode: Literal["r"] | None = "r" if mmap else None
        try:
            if (folder / "parts.json").is_file():
                layout = json.loads((folder / "parts.json").read_text())
                dtype = layout["dtype"]
                sources = [
                    {role: folder / f"{p['name']}.{role}{ext}" for role, ext in _PART_FILES.items()}
                    for p in layout["parts"]
                ]
                names = [p["name"] for p in layout["parts"]]
            else:  # the one-part layout of mixsearch-index/2
                dtype = "float32"
                sources = [
                    {"vectors": folder / "vectors.npy", "ids": folder / "ids.json", "fields": folder / "fields.parquet"}
                ]
                names = ["0"]
            parts = [_Part(name, np.load(src["vectors"], mmap_mode=mode), src) for name, src in zip(names, sources)]
            ids = [i for src in sources for i in json.loads(src["ids"].read_text())]
            tables = [pq.ParquetFile(src["fields"]).read() for src in sources]  # not read_table: it imports pandas
            deleted = np.load(folder / "deleted.npy") if (folder / "deleted.npy").is_file() else None
        except (OSError, ValueError, KeyError, TypeError) as err:
            if isinstance(err, FileNotFoundError):
                raise
            raise VectorIndexError(f"{folder}: unreadable index ({err})") from None
        table = pa.concat_tables(tables, promote_options="permissive")
        if "_rows" in table.column_names:
            table = table.drop_columns(["_rows"])
        index = cls.__new__(cls)
        index.where, index.dim = f"index at {folder}", int(parts[0].vectors.shape[1])
        index._dtype = np.dtype(DTYPES[_dtype_of({"dtype": dtype})])
        index._parts, index._ids = parts, ids
        total = sum(len(p.vectors) for p in parts)
        if len(ids) != total or table.num_rows not in (0, total):
            raise VectorIndexError(
                f"{folder}: unreadable index ({len(ids)} ids, {table.num_rows} field rows, {total} vectors)"
            )
        index._table = table if table.num_columns else arrow_table({}, total)
        index._deleted = None
        index._id_column = None
        index.kernels = default_kernels()
        if deleted is not None and len(deleted):
            index._deleted = np.zeros(total, dtype=bool)
            index._deleted[deleted] = True
        index._forget()
        return index


#: The files of one part: role -> name suffix.
_PART_FILES = {"vectors": ".npy", "ids": ".json", "fields": ".parquet"}


def _cast(vectors: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``vectors`` stored as ``dtype``, converted a chunk at a time (a large memory map never
    needs a float32 copy in RAM)."""
    if vectors.dtype == dtype:
        return vectors
    out = np.empty(vectors.shape, dtype=dtype)
    step = max(1, (64 << 20) // max(1, 4 * vectors.shape[1]))
    for start in range(0, len(vectors), step):
        out[start : start + step] = vectors[start : start + step]
    return out

"""The ``milvus`` index kind: vectors, ids and filter fields in a Milvus collection.

``uri`` names the database: a file path ending in ``.db`` is Milvus Lite (embedded, one machine;
what the tests use), an address like ``http://host:19530`` a Milvus server or cluster; the code
path is the same. The index folder's ``index-<g>/`` holds only ``milvus.json`` (uri, collection,
count, field types); everything else an index folder keeps (documents, raw embeddings,
calibration) stays local, so a recalibration re-upserts without re-encoding.

Generations: every save writes a *new* collection, ``<collection>_g<g>`` (``g`` from the
``index-<g>`` folder it is saved into), fully, before the engine commits the manifest that names
it; the collection of an older generation is dropped when the engine removes that generation's
folder (``discard``). A reader therefore sees one whole generation or the next, never a mix, and a
build or recalibration that fails half-way leaves the committed collection untouched.

Until it is saved, an index built here (``build``, and documents ``add``-ed since the last save)
lives in memory and is searched exactly there: ``MixIndex.with_calibration`` views never create
collections on a server. ``save`` writes the collection; ``load`` opens one.

Options: ``uri`` (required), ``collection`` (the collections' name stem; default
``mixsearch_<folder>_<8 hex>``), ``index_type`` (``AUTOINDEX`` by default; ``FLAT`` is exact,
``HNSW``, ``IVF_FLAT``... approximate), ``M``/``efConstruction``/``nlist`` (build) and
``ef``/``nprobe`` (search) parameters, ``consistency`` (``Strong`` by default) and ``timeout``
(seconds to connect, default 10). A server's token is read from ``MIXSEARCH_MILVUS_TOKEN``
(``user:password`` or an API key) and never written anywhere.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import MixsearchError, UsageError, VectorIndexError, require
from .base import Fields, Filter, Neighbours
from .exact import ExactIndex
from .milvus_filter import modality_expression, where_to_milvus

log = logging.getLogger(__name__)

#: Environment variable holding a Milvus server's token (never an option: options are recorded).
TOKEN_ENV = "MIXSEARCH_MILVUS_TOKEN"
#: The file an index folder keeps for this kind.
MARKER = "milvus.json"
INDEX_TYPES = ("AUTOINDEX", "FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "SCANN", "DISKANN")
CONSISTENCY = ("Strong", "Bounded", "Session", "Eventually")
BUILD_PARAMS = ("M", "efConstruction", "nlist")
SEARCH_PARAMS = ("ef", "nprobe")
DEFAULTS: dict[str, object] = {"index_type": "AUTOINDEX", "consistency": "Strong", "timeout": 10}
#: Rows per insert call (about 10 MB of 512-d vectors: well under gRPC's 64 MB message limit).
INSERT_ROWS = 5000
#: Queries per search call.
QUERY_BATCH = 1024
#: Milvus's largest top-k.
MAX_TOPK = 16384
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GENERATION = re.compile(r"index-(\d+)")
#: Field names of the collection itself; document fields may not take them.
RESERVED = ("id", "vector")
#: Longest text a VARCHAR field takes (Milvus's maximum; only a limit, nothing is reserved).
MAX_VARCHAR = 65535
#: The first Milvus with nullable fields; on older servers a null is a stand-in value and a flag.
NULLABLE_SINCE = (2, 5)
#: A null field's stand-in value beside its null flag ``<field>__null`` (never compared: see milvus_filter).
STAND_IN: dict[str, object] = {"INT64": 0, "DOUBLE": 0.0, "BOOL": False, "VARCHAR": ""}
#: Build parameters a server older than 2.5 requires (newer ones and Lite choose their own).
LEGACY_BUILD = {"HNSW": {"M": 16, "efConstruction": 200}, "IVF_FLAT": {"nlist": 128}, "IVF_SQ8": {"nlist": 128}}


def check_options(options: Mapping[str, object] | None) -> dict[str, object]:
    """The options with defaults filled in and names and values checked (a ``UsageError`` otherwise)."""
    given = dict(options or {})
    if "token" in given:
        raise UsageError(
            f"the milvus index takes its token from the environment variable {TOKEN_ENV}, never as an "
            "option (options are written into the index's manifest)"
        )
    known = {"uri", "collection", *DEFAULTS, *BUILD_PARAMS, *SEARCH_PARAMS}
    unknown = sorted(set(given) - known)
    if unknown:
        raise UsageError(f"unknown milvus index option {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    out = {**DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    uri = out.get("uri")
    if not isinstance(uri, str) or not uri.strip():
        raise UsageError("the milvus index needs the option uri: a Milvus Lite file (*.db) or http://host:19530")
    out["uri"] = _normal_uri(uri.strip())
    collection = out.get("collection")
    if collection is not None and (not isinstance(collection, str) or not _NAME.fullmatch(collection)):
        raise UsageError(
            f"milvus collection name {collection!r}: use letters, digits and _ (not starting with a digit)"
        )
    if collection is not None and len(collection) > 200:
        raise UsageError(f"milvus collection name {collection!r} is longer than 200 characters")
    index_type = str(out["index_type"]).upper()
    if index_type not in INDEX_TYPES:
        raise UsageError(f"milvus index_type {out['index_type']!r}: expected one of {', '.join(INDEX_TYPES)}")
    out["index_type"] = index_type
    consistency = {c.lower(): c for c in CONSISTENCY}.get(str(out["consistency"]).lower())
    if consistency is None:
        raise UsageError(f"milvus consistency {out['consistency']!r}: expected one of {', '.join(CONSISTENCY)}")
    out["consistency"] = consistency
    for name in (*BUILD_PARAMS, *SEARCH_PARAMS):
        if name in out and (isinstance(out[name], bool) or not isinstance(out[name], int) or out[name] < 1):  # type: ignore[operator]
            raise UsageError(f"milvus index option {name} must be a positive whole number, got {out[name]!r}")
    timeout = out["timeout"]
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise UsageError(f"milvus index option timeout must be a positive number of seconds, got {timeout!r}")
    return out


def _normal_uri(uri: str) -> str:
    """A server address as given; a Milvus Lite file as an absolute path (the index is opened from anywhere)."""
    if "://" in uri or uri.startswith("unix:"):
        return uri
    if not uri.endswith(".db"):
        raise UsageError(
            f"milvus uri {uri!r}: expected a Milvus Lite file ending in .db or a server address such as "
            "http://localhost:19530"
        )
    return str(Path(uri).expanduser().resolve())


# -- connections ----------------------------------------------------------------------------------

_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()


def _pymilvus():
    return require("pymilvus", "milvus", "the milvus index")


def connect(uri: str, timeout: float = 10) -> Any:
    """A ``MilvusClient`` for ``uri`` (one per uri and token in a process), or a ``VectorIndexError``
    naming the uri when it cannot be reached within ``timeout`` seconds."""
    pymilvus = _pymilvus()
    token = os.environ.get(TOKEN_ENV, "")
    with _clients_lock:
        client = _clients.get((uri, token))
        if client is not None:
            return client
        if "://" not in uri and not uri.startswith("unix:") and not Path(uri).parent.is_dir():
            raise VectorIndexError(f"cannot open Milvus Lite at {uri}: the folder {Path(uri).parent} does not exist")
        try:
            client = pymilvus.MilvusClient(uri=uri, token=token, timeout=timeout)
            client.list_collections(timeout=timeout)  # a server that accepts the socket but is not Milvus fails here
        except Exception as err:  # pymilvus raises MilvusException, grpc errors, OSError... all mean the same here
            lite = (
                ""
                if "://" in uri or uri.startswith("unix:")
                else (
                    " (a Milvus Lite file is open in one process at a time: is another process, such as "
                    "'mixsearch serve', using it?)"
                )
            )
            raise VectorIndexError(f"cannot reach Milvus at {uri}: {_message(err)}{lite}") from None
        _clients[(uri, token)] = client
        return client


def _message(err: BaseException) -> str:
    return str(getattr(err, "message", None) or err).strip() or type(err).__name__


class _Calls:
    """Milvus calls on one uri, with any failure a ``VectorIndexError`` naming the uri and what was done."""

    def __init__(self, uri: str, timeout: float):
        self.uri = uri
        self.client = connect(uri, timeout)
        self._legacy: bool | None = None

    @property
    def legacy(self) -> bool:
        """Whether the server predates nullable fields (Milvus < 2.5, such as PyPI's ``milvus`` 2.3)."""
        if self._legacy is None:
            version = str(self("asking the server version", "get_server_version"))
            # "v2.3.5-lite", "v2.5.4"; Milvus Lite answers "milvus_lite-3.2.2" and has nullable fields
            match = re.fullmatch(r"v?(\d+)\.(\d+)\b.*", version)
            self._legacy = bool(match) and tuple(map(int, match.groups())) < NULLABLE_SINCE  # type: ignore[union-attr]
        return self._legacy

    def __call__(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except Exception as err:
            raise VectorIndexError(f"Milvus at {self.uri}: {what} failed: {_message(err)}") from None


# -- fields -----------------------------------------------------------------------------------------


def field_type(name: str, values: np.ndarray) -> str:
    """The Milvus scalar type of a document field: BOOL, INT64, DOUBLE or VARCHAR."""
    values = np.asarray(values)
    kind = values.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT64"
    if kind == "f":
        return "DOUBLE"
    if kind in "US":
        return "VARCHAR"
    if kind == "O":
        present = [v for v in values.tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if all(isinstance(v, str) for v in present):
            return "VARCHAR"
        if all(isinstance(v, (bool, np.bool_)) for v in present):
            return "BOOL"
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in present):
            return "INT64"
        if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in present):
            return "DOUBLE"
        kinds = sorted({type(v).__name__ for v in present})
        raise VectorIndexError(f"field {name!r} mixes value types ({', '.join(kinds)}), which Milvus cannot store")
    raise VectorIndexError(
        f"field {name!r} holds {values.dtype} values, which the milvus index cannot store: use text or numbers"
    )


def _check_field_name(name: str) -> None:
    if not _NAME.fullmatch(name) or name in RESERVED:
        raise VectorIndexError(
            f"field {name!r} cannot be a Milvus field: names are letters, digits and _ (not starting with a "
            f"digit), and not {' or '.join(RESERVED)}"
        )


def _python_values(values: np.ndarray, milvus_type: str) -> list:
    """A field's values as Milvus takes them (NaN and None as null)."""
    out: list[object] = []
    for v in np.asarray(values).tolist():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        elif milvus_type == "INT64":
            out.append(int(v))
        elif milvus_type == "DOUBLE":
            out.append(float(v))
        elif milvus_type == "BOOL":
            out.append(bool(v))
        else:
            out.append(str(v))
    return out


# -- the index ------------------------------------------------------------------------------------


class MilvusIndex:
    """Inner-product search in a Milvus collection (see the module's docstring for generations).

    A saved index is ``collection`` (its rows) minus ``removed`` (ids deleted or replaced since it
    was opened) plus ``pending`` (rows added since, in memory); ``save`` writes all three as one
    new collection.
    """

    kind: ClassVar[str] = "milvus"

    def __init__(
        self,
        options: Mapping[str, object],
        dim: int,
        *,
        collection: str | None = None,
        count: int = 0,
        types: Mapping[str, str] | None = None,
        pending: ExactIndex | None = None,
        null_flags: Mapping[str, str] | None = None,
    ):
        self._options = dict(options)
        self.dim = int(dim)
        self.collection = collection
        self.count = count
        self.types = dict(types or {})
        #: field -> its null flag field, in a collection on a server without nullable fields
        self.null_flags = dict(null_flags or {})
        self.pending = pending
        self.removed: set[str] = set()
        self._calls: _Calls | None = None

    # -- the protocol ------------------------------------------------------------------------

    @classmethod
    def check_options(cls, options: Mapping[str, object] | None) -> None:
        """Check the options and reach the database they name (before a build does any work)."""
        checked = check_options(options)
        connect(str(checked["uri"]), float(checked["timeout"]))  # type: ignore[arg-type]

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: Sequence[str],
        fields: Fields | None = None,
        *,
        options: Mapping[str, object] | None = None,
    ) -> MilvusIndex:
        """An index over ``vectors``, searched in memory until ``save`` writes its collection."""
        checked = check_options(options)
        pending = ExactIndex(np.asarray(vectors, dtype=np.float32), ids, fields, where="milvus index (not saved)")
        types = {name: field_type(name, values) for name, values in pending.fields.items()}
        for name in types:
            _check_field_name(name)
        return cls(checked, pending.dim, types=types, pending=pending)

    @property
    def options(self) -> dict[str, object]:
        """The settings (with the collection name stem once saved); never a token."""
        return dict(self._options)

    def info(self) -> dict[str, object]:
        """Where the vectors live: backend, uri, collection, index type."""
        return {
            "backend": "milvus",
            "uri": self._options["uri"],
            "collection": self.collection,
            "index_type": self._options["index_type"],
            "documents": len(self),
        }

    def __len__(self) -> int:
        return self.count - len(self.removed) + (len(self.pending) if self.pending is not None else 0)

    def _milvus(self) -> _Calls:
        if self._calls is None:
            self._calls = _Calls(str(self._options["uri"]), float(self._options["timeout"]))  # type: ignore[arg-type]
        return self._calls

    def add(self, vectors: np.ndarray, ids: Sequence[str], fields: Fields | None = None) -> None:
        """Add documents (in memory until ``save``); ids already present are replaced."""
        ids = list(ids)
        for name, values in (fields or {}).items():
            _check_field_name(name)
            kind, wanted = field_type(name, values), self.types.get(name)
            all_null = all(v is None for v in _python_values(values, "VARCHAR"))
            if wanted is not None and not (all_null or kind == wanted or (kind, wanted) == ("INT64", "DOUBLE")):
                raise VectorIndexError(f"added documents' field {name!r} holds {kind} values, the index {wanted}")
        if set(fields or {}) != set(self.types):
            raise VectorIndexError(f"milvus index: added documents need the fields {sorted(self.types)}")
        self.removed |= set(self._in_collection(ids))
        if self.pending is None:
            vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
            self.pending = ExactIndex(vectors, ids, fields, where="milvus index (added, not saved)")
            if self.pending.dim != self.dim:
                self.pending = None
                raise VectorIndexError(
                    f"milvus index: cannot add vectors of dimension {vectors.shape[1]} to {self.dim}"
                )
        else:
            self.pending.add(vectors, ids, fields)

    def delete(self, ids: Iterable[str]) -> int:
        """Remove documents by id (from the collection at the next ``save``); returns how many were there."""
        ids = list(dict.fromkeys(ids))
        removed = self.pending.delete(ids) if self.pending is not None else 0
        gone = set(self._in_collection(ids)) - self.removed
        self.removed |= gone
        return removed + len(gone)

    def _in_collection(self, ids: Sequence[str]) -> list[str]:
        """Which of ``ids`` the saved collection holds."""
        if self.collection is None or not ids:
            return []
        found: list[str] = []
        for start in range(0, len(ids), 1000):
            chunk = list(ids[start : start + 1000])
            rows = self._milvus()("looking up ids", "query", self.collection, filter=f"id in {json.dumps(chunk)}")
            found += [r["id"] for r in rows]
        return found

    def search(self, queries: np.ndarray, k: int = 10, filter: Filter | None = None) -> Neighbours:
        """The ``k`` best documents per query by inner product, best first, allowed by ``filter``."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise VectorIndexError(
                f"query dimension {queries.shape[1]} does not match the milvus index's {self.dim}: "
                "was it built with another model?"
            )
        q, k = len(queries), max(0, min(int(k), len(self)))
        if k == 0 or q == 0:
            return Neighbours(np.full((q, k), -np.inf, dtype=np.float32), [[] for _ in range(q)])
        found: list[list[tuple[float, str]]] = [[] for _ in range(q)]
        if self.collection is not None and self.count > len(self.removed):
            try:
                near_collection = self._search_collection(queries, k + len(self.removed), filter)
            except VectorIndexError:
                if not self._milvus()(f"checking for collection {self.collection}", "has_collection", self.collection):
                    raise VectorIndexError(
                        f"Milvus collection {self.collection} is gone: the index was rebuilt or recalibrated "
                        "since it was opened; open it again"
                    ) from None
                raise
            for i, hits in enumerate(near_collection):
                found[i] += [(s, d) for s, d in hits if d not in self.removed]
        if self.pending is not None and len(self.pending):
            near = self.pending.search(queries, k, filter)
            for i, (ids, scores) in enumerate(zip(near.ids, near.scores)):
                found[i] += list(zip(scores.tolist(), ids))
        scores = np.full((q, k), -np.inf, dtype=np.float32)
        ids_out = []
        for i, hits in enumerate(found):
            best = sorted(hits, key=lambda h: -h[0])[:k]
            scores[i, : len(best)] = [s for s, _ in best]
            ids_out.append([d for _, d in best])
        return Neighbours(scores, ids_out)

    def expression(self, filter: Filter | None) -> str:
        """The Milvus filter expression of ``filter`` ("" for none)."""
        if filter is None:
            return ""
        parts = []
        if filter.modality is not None:
            if "modality" not in self.types:
                raise VectorIndexError("this index keeps no 'modality' field to filter on")
            parts.append(modality_expression(filter.modality))
        if filter.where is not None:
            parts.append(f"({where_to_milvus(filter.where, {'id', *self.types}, self.null_flags)})")
        return " and ".join(parts)

    def _search_collection(self, queries: np.ndarray, k: int, filter: Filter | None) -> list[list[tuple[float, str]]]:
        assert self.collection is not None
        expr = self.expression(filter)
        k = min(k, MAX_TOPK)
        params: dict[str, object] = {name: self._options[name] for name in SEARCH_PARAMS if name in self._options}
        if self._options["index_type"] == "HNSW":
            params["ef"] = max(int(params.get("ef", 0)), k)  # type: ignore[call-overload]
        out: list[list[tuple[float, str]]] = []
        for start in range(0, len(queries), QUERY_BATCH):
            result = self._milvus()(
                f"searching collection {self.collection}" + (f" with filter {expr!r}" if expr else ""),
                "search",
                self.collection,
                data=queries[start : start + QUERY_BATCH].tolist(),
                limit=k,
                filter=expr,
                anns_field="vector",
                search_params={"metric_type": "IP", "params": params},
                output_fields=[],
            )
            out += [[(float(hit["distance"]), str(hit["id"])) for hit in hits] for hits in result]
        return out

    # -- files and collections ---------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write every row into a new collection, and ``milvus.json`` naming it into ``folder``."""
        folder = Path(folder)
        milvus = self._milvus()
        stem = self._options.get("collection") or _default_stem(folder)
        match = _GENERATION.fullmatch(folder.name)
        name = f"{stem}_g{match.group(1)}" if match else f"{stem}_{uuid.uuid4().hex[:8]}"
        if milvus(f"checking for collection {name}", "has_collection", name):
            raise VectorIndexError(
                f"Milvus at {milvus.uri} already has a collection {name}: another index uses the name "
                f"{stem!r} (choose another with --index-option collection=NAME), or a failed build left it "
                "(drop it)"
            )
        options = {**self._options, "collection": stem}
        count = len(self)
        flags = self._null_flags(milvus)
        record = {"uri": options["uri"], "collection": name, "dim": self.dim, "count": count, "fields": self.types}
        if flags:
            record["null_flags"] = flags
        folder.mkdir(parents=True, exist_ok=True)
        # named before it exists, so whoever clears this folder after a failure drops the collection too
        (folder / MARKER).write_text(json.dumps({**record, "options": options}, indent=2))
        try:
            self._create(milvus, name, flags)
            written = 0
            for rows in self._rows(flags):
                milvus(f"inserting into collection {name}", "insert", name, rows)
                written += len(rows)
            milvus(f"flushing collection {name}", "flush", name)
            stored = _count(milvus, name)
            if stored != count or written != count:
                raise VectorIndexError(f"Milvus at {milvus.uri}: collection {name} holds {stored} rows, not {count}")
        except BaseException:
            _drop(milvus, name)
            raise
        self._options, self.collection, self.count = options, name, count
        self.pending, self.removed, self.null_flags = None, set(), flags

    def _null_flags(self, milvus: _Calls) -> dict[str, str]:
        """The null flag of each nullable field on a server without nullable fields (else none)."""
        if not milvus.legacy:
            return {}
        flags = {field: f"{field}__null" for field in self.types if field != "modality"}
        taken = sorted(set(flags.values()) & {*self.types, *RESERVED})
        if taken:
            raise VectorIndexError(
                f"Milvus at {milvus.uri} (before 2.5) keeps a field's nulls in a flag field <field>__null, "
                f"and the documents already have a field {', '.join(taken)}: rename it"
            )
        return flags

    def _create(self, milvus: _Calls, name: str, flags: Mapping[str, str]) -> None:
        pymilvus = _pymilvus()
        schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", pymilvus.DataType.VARCHAR, is_primary=True, max_length=MAX_VARCHAR)
        schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=self.dim)
        for field, kind in self.types.items():
            extra: dict[str, object] = {"max_length": MAX_VARCHAR} if kind == "VARCHAR" else {}
            nullable = field != "modality" and not flags
            schema.add_field(field, getattr(pymilvus.DataType, kind), nullable=nullable, **extra)
        for flag in flags.values():
            schema.add_field(flag, pymilvus.DataType.BOOL)
        index = milvus.client.prepare_index_params()
        params = {p: self._options[p] for p in BUILD_PARAMS if p in self._options}
        if milvus.legacy:
            params = {**LEGACY_BUILD.get(str(self._options["index_type"]), {}), **params}
        index.add_index("vector", index_type=self._options["index_type"], metric_type="IP", params=params)
        milvus(
            f"creating collection {name}",
            "create_collection",
            name,
            schema=schema,
            index_params=index,
            consistency_level=self._options["consistency"],
        )

    def _rows(self, flags: Mapping[str, str]) -> Iterator[list[dict]]:
        """Every row of the index, in batches: the saved collection's (less the removed), then the pending;
        with ``flags``, each null as its stand-in value and its flag true."""
        if self.collection is not None:
            milvus = self._milvus()
            iterator = milvus(
                f"reading collection {self.collection}",
                "query_iterator",
                self.collection,
                batch_size=INSERT_ROWS,
                output_fields=["id", "vector", *self.types, *self.null_flags.values()],
            )
            while True:
                try:
                    batch = iterator.next()
                except Exception as err:
                    raise VectorIndexError(
                        f"Milvus at {milvus.uri}: reading collection {self.collection} failed: {_message(err)}"
                    ) from None
                if not batch:
                    iterator.close()
                    break
                yield [self._reflag(dict(r), flags) for r in batch if r["id"] not in self.removed]
        if self.pending is not None:
            pending = self.pending
            for start in range(0, len(pending), INSERT_ROWS):
                stop = start + INSERT_ROWS
                columns: dict[str, list] = {
                    "id": pending.ids[start:stop],
                    "vector": np.asarray(pending.vectors[start:stop], dtype=np.float32).tolist(),
                }
                for field, kind in self.types.items():
                    values = _python_values(pending.fields[field][start:stop], kind)
                    if field in flags:
                        columns[flags[field]] = [v is None for v in values]
                        values = [STAND_IN[kind] if v is None else v for v in values]
                    columns[field] = values
                yield [dict(zip(columns, row)) for row in zip(*columns.values())]

    def _reflag(self, row: dict, flags: Mapping[str, str]) -> dict:
        """A row read from the saved collection as the one written takes it (the same server, hence the
        same null flags, unless it was upgraded past 2.5 in between)."""
        if flags == self.null_flags:
            return row
        for field, flag in self.null_flags.items():
            if row.pop(flag, False):
                row[field] = None
        for field, flag in flags.items():
            row[flag] = row.get(field) is None
            if row[flag]:
                row[field] = STAND_IN[self.types[field]]
        return row

    @classmethod
    def load(cls, folder: Path) -> MilvusIndex:
        """Open the collection ``milvus.json`` in ``folder`` names (loading it for search)."""
        record = _read_marker(Path(folder))
        options = check_options(record["options"])
        index = cls(
            options,
            record["dim"],
            collection=record["collection"],
            count=record["count"],
            types=record["fields"],
            null_flags=record.get("null_flags"),
        )
        milvus, name = index._milvus(), record["collection"]
        if not milvus(f"checking for collection {name}", "has_collection", name):
            raise VectorIndexError(
                f"{folder}: Milvus at {milvus.uri} has no collection {name} (dropped?); rebuild the index"
            )
        state = milvus(f"loading collection {name}", "get_load_state", name)
        if "Loaded" not in str(state.get("state")):
            milvus(f"loading collection {name}", "load_collection", name)
        stored = _count(milvus, name)
        if stored != record["count"]:
            raise VectorIndexError(
                f"{folder}: Milvus collection {name} at {milvus.uri} holds {stored} rows, the index {record['count']}"
            )
        return index

    @classmethod
    def discard(cls, folder: Path) -> None:
        """Drop the collection a saved index folder names (called before the folder is removed).
        Best effort: an unreachable database is logged, never raised."""
        path = Path(folder) / MARKER
        if not path.is_file():
            return
        try:
            record = _read_marker(Path(folder))
            options = check_options(record["options"])
            milvus = _Calls(str(options["uri"]), float(options["timeout"]))  # type: ignore[arg-type]
        except MixsearchError as err:  # unreachable, pymilvus gone, a damaged record: never block a cleanup
            log.warning("%s: could not drop its Milvus collection: %s", folder, err)
            return
        _drop(milvus, record["collection"])


def _read_marker(folder: Path) -> dict:
    try:
        record = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        for key in ("uri", "collection", "dim", "count", "fields", "options"):
            record[key]  # noqa: B018 - a missing key is a damaged marker
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise VectorIndexError(f"{folder / MARKER}: unreadable milvus index record ({err!r})") from None
    return record


def _default_stem(folder: Path) -> str:
    """``mixsearch_<index folder name>_<8 hex>``: readable on a shared server, and unique."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", folder.resolve().parent.name)[:48].strip("_") or "index"
    return f"mixsearch_{base}_{uuid.uuid4().hex[:8]}"


def _count(milvus: _Calls, name: str) -> int:
    rows = milvus(f"counting collection {name}", "query", name, filter="", output_fields=["count(*)"])
    return int(rows[0]["count(*)"])


def _drop(milvus: _Calls, name: str) -> None:
    """Drop a collection if it is there; a failure is logged (it only costs space on the server)."""
    try:
        if milvus(f"checking for collection {name}", "has_collection", name):
            milvus(f"dropping collection {name}", "drop_collection", name)
    except VectorIndexError as err:
        log.warning("could not drop Milvus collection %s (drop it by hand): %s", name, err)

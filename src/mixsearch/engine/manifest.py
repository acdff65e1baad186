"""The manifest of an index folder, typed: what the folder holds, read from and written to
``manifest.json`` (the commit point, see ``store``).

``Manifest`` is a frozen dataclass with nested records for the model, the calibration, the vector
index, the document counts and the segments. The JSON on disk stays ``mixsearch-index/3``;
formats 1 and 2 still read. Keys this version does not know are kept in each record's ``extra``
and written back unchanged, so a manifest from a newer mixsearch survives a change made by this one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import VectorIndexError
from ..types import DOCUMENT_MODALITIES
from . import durable

FORMAT = "mixsearch-index/3"
FORMAT_1 = "mixsearch-index/1"
FORMAT_2 = "mixsearch-index/2"
LEGACY_FORMATS = (FORMAT_1, FORMAT_2)
MANIFEST = "manifest.json"


def _extra(data: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """The keys of ``data`` a record does not know: kept, and written back as they were."""
    return {k: v for k, v in data.items() if k not in known}


def _present(**values: Any) -> dict[str, Any]:
    """The optional keys that have a value (absent ones are left out of the JSON, as before)."""
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class ModelRecord:
    """The model an index was built with (``Encoder.info()``)."""

    name: str
    fingerprint: str
    dim: int
    modalities: tuple[str, ...] | None = None
    backend: str | None = None
    video_frames: int | None = None  # frames sampled per video: they change video embeddings
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS = ("name", "fingerprint", "dim", "modalities", "backend", "video_frames")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelRecord:
        """The record from its JSON form (keys it does not know kept in ``extra``)."""
        modalities = data.get("modalities")
        frames = data.get("video_frames")
        return cls(
            name=str(data["name"]),
            fingerprint=str(data["fingerprint"]),
            dim=int(data["dim"]),
            modalities=None if modalities is None else tuple(modalities),
            backend=data.get("backend"),
            video_frames=None if frames is None else int(frames),
            extra=_extra(data, cls._KEYS),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``extra`` written back as it was read)."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            **_present(
                modalities=None if self.modalities is None else list(self.modalities),
                backend=self.backend,
                video_frames=self.video_frames,
            ),
            **self.extra,
        }


@dataclass(frozen=True)
class CalibrationRecord:
    """How the index's calibration was made (method, alpha, where its statistics came from)."""

    method: str
    alpha: float
    source: str | None = None
    counts: Mapping[str, int] | None = None
    fitted_for: Mapping[str, Any] | None = None
    provenance: Mapping[str, Any] | None = None
    shift_lambda: float | None = None  # "lambda" in the JSON (method shift)
    rrf_k: int | None = None  # method rrf
    relevance: Mapping[str, Any] | None = None  # the relevance map's summary, when it has one
    notes: tuple[str, ...] | None = None  # what ``with_calibration`` noticed (kept when persisted)
    file: str | None = None  # the calibration file of this generation
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS = (
        "method",
        "alpha",
        "source",
        "counts",
        "fitted_for",
        "provenance",
        "lambda",
        "rrf_k",
        "relevance",
        "notes",
        "file",
    )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationRecord:
        """The record from its JSON form (keys it does not know kept in ``extra``)."""
        notes = data.get("notes")
        return cls(
            method=str(data.get("method", "mean")),
            alpha=float(data.get("alpha", 0.5)),
            source=data.get("source"),
            counts=data.get("counts"),
            fitted_for=data.get("fitted_for"),
            provenance=data.get("provenance"),
            shift_lambda=data.get("lambda"),
            rrf_k=data.get("rrf_k"),
            relevance=data.get("relevance"),
            notes=None if notes is None else tuple(notes),
            file=data.get("file"),
            extra=_extra(data, cls._KEYS),
        )

    @classmethod
    def of(cls, cal: Any, source: str, notes: list[str] | None = None) -> CalibrationRecord:
        """How the manifest describes the calibrator ``cal`` (a ``Calibrator``) from ``source``."""
        return cls(
            method=cal.method,
            alpha=float(cal.alpha),
            source=source,
            counts=cal.counts_,
            fitted_for=cal.fitted_for,
            provenance=cal.provenance,
            shift_lambda=cal.shift_lambda if cal.method == "shift" else None,
            rrf_k=cal.rrf_k if cal.method == "rrf" else None,
            relevance=cal.relevance_.describe() if cal.relevance_ is not None else None,
            notes=None if notes is None else tuple(notes),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``extra`` written back as it was read)."""
        return {
            "method": self.method,
            "alpha": self.alpha,
            **_present(
                **{"lambda": self.shift_lambda},
                rrf_k=self.rrf_k,
                source=self.source,
                counts=self.counts,
                fitted_for=self.fitted_for,
                provenance=self.provenance,
                relevance=self.relevance,
                notes=None if self.notes is None else list(self.notes),
                file=self.file,
            ),
            **self.extra,
        }


@dataclass(frozen=True)
class IndexRecord:
    """The vector index: its kind, its settings (plain values, as the kind takes them), its folder."""

    kind: str = "exact"
    options: Mapping[str, Any] = field(default_factory=dict)
    path: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS = ("kind", "options", "path")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndexRecord:
        """The record from its JSON form (keys it does not know kept in ``extra``)."""
        return cls(
            kind=str(data.get("kind", "exact")),
            options=dict(data.get("options") or {}),
            path=data.get("path"),
            extra=_extra(data, cls._KEYS),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``extra`` written back as it was read)."""
        return {"kind": self.kind, "options": dict(self.options), **_present(path=self.path), **self.extra}


@dataclass(frozen=True)
class DocumentCounts:
    """Live documents, in all and per document modality."""

    total: int = 0
    text: int = 0
    image: int = 0
    audio: int = 0
    video: int = 0
    multimodal: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS = ("total", *DOCUMENT_MODALITIES)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DocumentCounts:
        """The record from its JSON form (keys it does not know kept in ``extra``)."""
        return cls(**{k: int(data.get(k, 0)) for k in cls._KEYS}, extra=_extra(data, cls._KEYS))

    @classmethod
    def of(cls, modalities: Any) -> DocumentCounts:
        """The counts of documents with these modalities (one per document)."""
        modalities = list(modalities)
        return cls(len(modalities), **{m: sum(x == m for x in modalities) for m in DOCUMENT_MODALITIES})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``extra`` written back as it was read)."""
        return {k: getattr(self, k) for k in self._KEYS} | dict(self.extra)


@dataclass(frozen=True)
class Segment:
    """The rows one build or one ``add`` wrote (never rewritten), in row order."""

    name: str
    rows: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``extra`` written back as it was read)."""
        return {"name": self.name, "rows": self.rows}


@dataclass(frozen=True)
class Manifest:
    """An index folder's ``manifest.json``, typed. Read it with ``Manifest.read(folder)``, change
    it with ``dataclasses.replace``, write it with ``write`` (the store's commit point does)."""

    model: ModelRecord
    calibration: CalibrationRecord
    index: IndexRecord = field(default_factory=IndexRecord)
    documents: DocumentCounts | None = None
    format: str = FORMAT
    generation: int = 0  # format 1 had none
    files: Mapping[str, str] | None = None  # role (documents, raw, calibration, index) -> name
    segments: tuple[Segment, ...] | None = None  # format 3 only
    created: str | None = None
    corpus: str | None = None
    mixsearch_version: str | None = None  # "mixsearch" in the JSON: the version that built it
    build: Mapping[str, Any] | None = None  # what the build did (counts, problems, notes)
    updated: Mapping[str, Any] | None = None  # the last add or delete
    integrity: Mapping[str, Any] | None = None  # {"ids_sha256": ...}
    compacted_at: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS = (
        "format",
        "mixsearch",
        "created",
        "corpus",
        "generation",
        "files",
        "segments",
        "model",
        "index",
        "calibration",
        "documents",
        "build",
        "updated",
        "integrity",
        "compacted_at",
    )

    # -- JSON ---------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """A manifest from its JSON form (any readable format; unknown keys kept)."""
        segments = data.get("segments")
        documents = data.get("documents")
        return cls(
            format=str(data["format"]),
            mixsearch_version=data.get("mixsearch"),
            created=data.get("created"),
            corpus=data.get("corpus"),
            generation=int(data.get("generation") or 0),
            files=None if data.get("files") is None else dict(data["files"]),
            segments=None if segments is None else tuple(Segment(str(s["name"]), int(s["rows"])) for s in segments),
            model=ModelRecord.from_dict(data["model"]),
            index=IndexRecord.from_dict(data.get("index") or {}),
            calibration=CalibrationRecord.from_dict(data.get("calibration") or {}),
            documents=None if documents is None else DocumentCounts.from_dict(documents),
            build=data.get("build"),
            updated=data.get("updated"),
            integrity=data.get("integrity"),
            compacted_at=data.get("compacted_at"),
            extra=_extra(data, cls._KEYS),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``json.dumps``-ready)."""
        return {
            "format": self.format,
            **_present(mixsearch=self.mixsearch_version, created=self.created, corpus=self.corpus),
            **({"generation": self.generation} if self.format != FORMAT_1 else {}),
            **_present(
                files=None if self.files is None else dict(self.files),
                segments=None if self.segments is None else [s.to_dict() for s in self.segments],
            ),
            "model": self.model.to_dict(),
            "index": self.index.to_dict(),
            "calibration": self.calibration.to_dict(),
            **_present(
                documents=None if self.documents is None else self.documents.to_dict(),
                build=self.build,
                updated=self.updated,
                integrity=self.integrity,
                compacted_at=self.compacted_at,
            ),
            **self.extra,
        }

    # -- the folder ---------------------------------------------------------------------------

    @classmethod
    def read(cls, folder: str | Path) -> Manifest:
        """The manifest of an index folder, checked for a readable format (a ``VectorIndexError``
        naming the folder otherwise)."""
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise VectorIndexError(f"{folder}: not a mixsearch index (no {MANIFEST})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise VectorIndexError(f"{path}: unreadable manifest ({err}); rebuild the index") from None
        fmt = data.get("format") if isinstance(data, dict) else None
        if fmt != FORMAT and fmt not in LEGACY_FORMATS:
            raise VectorIndexError(
                f"{folder}: unknown index format {fmt!r} (this mixsearch reads {FORMAT} and "
                f"{', '.join(LEGACY_FORMATS)}); rebuild it with 'mixsearch index'"
            )
        assert isinstance(data, dict)
        if fmt != FORMAT_1 and not isinstance(data.get("files"), dict):
            raise VectorIndexError(f"{path}: the manifest names no files; rebuild the index with 'mixsearch index'")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            problem = f"{type(err).__name__}: {err}"
            raise VectorIndexError(f"{path}: unreadable manifest ({problem}); rebuild the index") from None

    def write(self, folder: str | Path) -> None:
        """Replace the folder's manifest atomically (temporary file, fsync, rename). Only the
        store's commit point calls this: the files it names must be on disk first."""
        durable.write_json_atomic(Path(folder) / MANIFEST, self.to_dict())

    # -- what it says -------------------------------------------------------------------------

    @property
    def is_legacy(self) -> bool:
        """Format 1 or 2 (read, and upgraded by the next change)."""
        return self.format in LEGACY_FORMATS

    @property
    def ids_sha256(self) -> str | None:
        """The checksum of the ids in row order, tying the document table to the vectors."""
        return None if self.integrity is None else self.integrity.get("ids_sha256")

    def same_state(self, other: Manifest | None) -> bool:
        """Whether ``other`` describes the same state of the folder (generation and build)."""
        return other is not None and (self.generation, self.created) == (other.generation, other.created)

    def replace(self, **changes: Any) -> Manifest:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

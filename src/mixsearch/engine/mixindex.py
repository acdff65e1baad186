"""An index folder opened for search.

``MixIndex`` answers text, image and image+text queries, one or a list of them (``search``), through
one path: encode -> calibrate the queries -> vector index -> hits (``search_vectors`` starts from
embeddings). The encoder loads on the first query that needs it. ``with_calibration`` gives a view of the same
index under another calibration or alpha, computed in memory from the stored raw embeddings;
``persist`` writes a view to the folder, and ``recalibrate`` does both in place.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, overload

import numpy as np

from ..calibration import Calibrator, load_calibration, save_calibration
from ..calibration.relevance import check_min_relevance as _check_relevance_value
from ..encoders import Encoder, load_encoder, load_query_encoder
from ..errors import CalibrationError, MixsearchError, UsageError, VectorIndexError
from ..index import Filter, Neighbours, VectorIndex, build_index_of_kind
from ..types import MEDIA, MODALITIES, Document, Hit, Query
from . import store
from .fuse import CalibrationSpec, fuse_documents, presence, resolve_calibration
from .manifest import CalibrationRecord, Manifest, ModelRecord

log = logging.getLogger(__name__)
#: How long opening an index keeps retrying while writers keep committing new generations under it.
OPEN_RETRY_SECONDS = 30.0

#: What a query image may be: a path to an image file, or an already loaded image (PIL).
ImageQuery = Any
#: What a query audio clip or video may be: a path to its file, or an already loaded one
#: (``ingest.audio.Audio``, ``ingest.video.Video``).
MediaQuery = Any


class SearchResults(Sequence[list[Hit]]):
    """The hit lists of a batch of queries, in query order (``results[i]`` is query ``i``'s).

    A query's ``Hit`` objects are made when its list is first read: ``ids()`` (all that scoring a
    ranking needs) reads the ids alone, so a benchmark's millions of hits cost no objects."""

    def __init__(self, hits: list[list[Hit]]):
        self._lists: list[list[Hit] | None] = list(hits)
        self._ids: list[list[str]] | None = None
        self._scores: np.ndarray | None = None
        self._make: Any = None

    @classmethod
    def _deferred(cls, ids: list[list[str]], scores: np.ndarray, make: Any) -> SearchResults:
        """Results whose query ``i`` becomes ``make(ids[i], scores[i])`` on first read."""
        out = cls([])
        out._lists, out._ids, out._scores, out._make = [None] * len(ids), ids, scores, make
        return out

    @property
    def hits(self) -> list[list[Hit]]:
        """Every query's hit list (all made now)."""
        return [self[i] for i in range(len(self))]

    def __len__(self) -> int:
        return len(self._lists)

    @overload
    def __getitem__(self, i: int) -> list[Hit]: ...

    @overload
    def __getitem__(self, i: slice) -> list[list[Hit]]: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        got = self._lists[i]
        if got is None:  # two threads may both build it: the same list, either kept
            assert self._ids is not None and self._scores is not None
            got = self._lists[i] = self._make(self._ids[i], self._scores[i])
        return got

    def __iter__(self) -> Iterator[list[Hit]]:
        return (self[i] for i in range(len(self)))

    def ids(self) -> list[list[str]]:
        """The document ids of each query's hits, best first."""
        if self._ids is not None:
            return [list(ids) for ids in self._ids]
        return [[h.id for h in hits] for hits in self.hits]

    def to_dicts(self) -> list[list[dict]]:
        """Every hit as a JSON-ready dict, per query."""
        return [[h.to_dict() for h in hits] for hits in self]

    def __repr__(self) -> str:
        n = sum(map(len, self._ids)) if self._ids is not None else sum(map(len, self.hits))
        return f"SearchResults({len(self)} queries, {n} hits)"


class MixIndex:
    """An index folder opened for search (``open_index``); the encoder loads on first use.

    The constructor takes the parts already loaded (``open_index`` reads them from the folder) and
    does no I/O: ``manifest`` (a ``Manifest``), ``data`` (the documents and raw embeddings,
    ``store.Data``), the ``calibrator`` applied and the vector ``index`` searched. ``view``: a state
    computed in memory (``with_calibration``), not the folder's own."""

    def __init__(
        self,
        folder: str | Path,
        manifest: Manifest,
        data: store.Data,
        calibrator: Calibrator,
        index: VectorIndex,
        *,
        encoder: Encoder | None = None,
        device: str | None = None,
        runtime: str = "auto",
        view: bool = False,
    ):
        self.folder = Path(folder)
        self.manifest = manifest
        self.data = data
        self.documents = data.documents
        self.metadata_fields = [n for n in data.table.column_names if n not in store.OWN_COLUMNS]
        self.calibrator = calibrator
        self.index = index
        self.device = device
        self.runtime = runtime
        self.is_view = view
        self._raw = data.raw
        self._row_of: dict[str, int] | None = None  # id -> row, built on first need (O(n))
        self._encoder = encoder
        self._encoder_lock = threading.Lock()
        #: the light encoders for queries of one modality (``query_encoder``), by modality; None
        #: where there is none. Not used when the caller gave the encoder: it encodes everything.
        self._light: dict[str, Encoder | None] = {}
        self._encoder_given = encoder is not None
        if encoder is not None:
            self._check_encoder(encoder)

    def _become(self, other: MixIndex) -> None:
        """Show ``other``'s state through this object (a change made through it: add, delete,
        recalibrate), keeping its loaded model."""
        encoder = self._encoder or other._encoder
        lock, light, given = self._encoder_lock, self._light, self._encoder_given
        self.__dict__.update(other.__dict__)
        self._encoder, self._encoder_lock, self._light, self._encoder_given = encoder, lock, light, given

    @property
    def ids(self) -> list[str]:
        """The documents' ids, in row order (converted from the Arrow table on first use)."""
        return self.documents["id"]

    @property
    def modality(self) -> np.ndarray:
        """Each document's modality, in row order (converted on first use)."""
        return self.documents.array("modality")

    @property
    def _rows(self) -> dict[str, int]:
        """Each document id's row (built once, on the first hit or change that needs it)."""
        if self._row_of is None:
            self._row_of = {doc_id: row for row, doc_id in enumerate(self.ids)}
        return self._row_of

    # -- what it is -------------------------------------------------------------------------

    @property
    def model(self) -> ModelRecord:
        """The model the index was built with (name, fingerprint, dim, modalities)."""
        return self.manifest.model

    @property
    def alpha(self) -> float:
        """The text weight of multimodal documents in this index (or view)."""
        return self.manifest.calibration.alpha

    @property
    def encoder(self) -> Encoder:
        """The index's model, loaded once on first use (thread-safe)."""
        with self._encoder_lock:
            if self._encoder is None:
                encoder = load_encoder(
                    self.model.name, device=self.device, runtime=self.runtime, **_loading_options(self.model)
                )
                self._check_encoder(encoder)
                self._encoder = encoder
        return self._encoder

    def query_encoder(self, modality: str) -> Encoder:
        """The encoder for queries of ``modality``: a light one that loads without the model when
        there is one (``encoders.load_query_encoder``: the model's exported ONNX text tower, no
        torch), else the index's model (``encoder``). An encoder given to ``open_index`` encodes
        every query."""
        if self._encoder_given:
            return self.encoder
        with self._encoder_lock:
            if modality not in self._light:
                model = self.model
                light = load_query_encoder(
                    model.name, model.fingerprint, model.dim, modality, device=self.device, runtime=self.runtime
                )
                if light is not None:
                    self._check_encoder(light)
                self._light[modality] = light
            light = self._light[modality]
        return light if light is not None else self.encoder

    def _check_encoder(self, encoder: Encoder) -> None:
        frames = self.model.video_frames
        if frames is not None and encoder.info().get("video_frames", frames) != frames:
            raise CalibrationError(
                f"{self.folder} was built sampling {frames} frames per video; {encoder.name!r} samples "
                f"{encoder.info().get('video_frames')}: load it with video_frames={frames}"
            )
        if encoder.fingerprint != self.model.fingerprint or encoder.dim != self.model.dim:
            raise CalibrationError(
                f"{self.folder} was built with model {self.model.name!r} (fingerprint "
                f"{self.model.fingerprint}, dim {self.model.dim}); {encoder.name!r} (fingerprint "
                f"{encoder.fingerprint}, dim {encoder.dim}) cannot query it"
            )

    def __len__(self) -> int:
        return self.data.table.num_rows

    def is_stale(self) -> bool:
        """Whether the folder now holds another state than this object (rebuilt or recalibrated
        since it was opened); reopen it with ``open_index`` to see the new one."""
        try:
            current = store.read_manifest(self.folder)
        except MixsearchError:
            return True
        return not current.same_state(self.manifest)

    def __repr__(self) -> str:
        view = ", view" if self.is_view else ""
        cal = self.manifest.calibration
        return f"MixIndex({str(self.folder)!r}, {len(self)} documents, {cal.method} alpha={cal.alpha}{view})"

    # -- queries ----------------------------------------------------------------------------

    @overload
    def search(  # type: ignore[overload-overlap]  # a str is a Sequence too: the first variant wins
        self,
        query: str | Query | None = None,
        *,
        image: ImageQuery | None = None,
        audio: MediaQuery | None = None,
        video: MediaQuery | None = None,
        k: int = 10,
        modality: str | Sequence[str] | None = None,
        where: str | None = None,
        min_relevance: float | None = None,
    ) -> list[Hit]: ...

    @overload
    def search(
        self,
        query: Sequence[str | Query],
        *,
        image: ImageQuery | None = None,
        audio: MediaQuery | None = None,
        video: MediaQuery | None = None,
        k: int = 10,
        modality: str | Sequence[str] | None = None,
        where: str | None = None,
        min_relevance: float | None = None,
    ) -> SearchResults: ...

    def search(
        self,
        query: str | Query | Sequence[str | Query] | None = None,
        *,
        image: ImageQuery | None = None,
        audio: MediaQuery | None = None,
        video: MediaQuery | None = None,
        k: int = 10,
        modality: str | Sequence[str] | None = None,
        where: str | None = None,
        min_relevance: float | None = None,
    ) -> list[Hit] | SearchResults:
        """Search with one query, or with a list of them.

        A query is a text, a ``Query`` (text, image, audio, video, or a text with one medium:
        an image+text query), or, for one query, the keywords ``image=``, ``audio=``, ``video=``
        (with or without a text): ``search("a dog")``, ``search(image="q.jpg")``,
        ``search("a dog", image="q.jpg")``. One query in, its hits out (``list[Hit]``); a list in,
        ``SearchResults`` out, one hit list per query in the order given (a list may mix kinds of
        query: each kind is encoded as one batch).

        ``modality`` keeps only documents of that modality (or those modalities): ``text``,
        ``image``, ``audio``, ``video`` or ``multimodal``. ``where`` keeps only documents whose
        metadata fields pass an SQL condition (``"year >= 2020 AND source = 'wiki'"``, DuckDB's
        SQL); both filters apply before the top ``k``, so k hits come back whenever k qualify.
        ``min_relevance`` drops hits whose estimated relevance (the calibration's relevance map)
        is below it, so fewer than ``k`` may come back.
        """
        media = {"image": image, "audio": audio, "video": video}
        if isinstance(query, str) or not isinstance(query, Sequence):  # a str is one query, never its characters
            queries, one = [_as_query(query, **media)], True
        elif any(v is not None for v in media.values()):
            raise UsageError("image=, audio= and video= describe one query; give a list of Query(...) instead")
        else:
            queries, one = [_as_query(q) for q in query], False
        filter_, cut = self._check_arguments(k, modality, where, min_relevance)  # before the model loads
        if not queries:
            return SearchResults([])
        results = self._rank(self._query_vectors(queries), int(k), filter_, cut)
        return results[0] if one else results

    def search_vectors(
        self,
        vectors: np.ndarray | Mapping[str, np.ndarray],
        *,
        k: int = 10,
        modality: str | Sequence[str] | None = None,
        where: str | None = None,
        min_relevance: float | None = None,
    ) -> SearchResults:
        """Rank the index for query vectors, one hit list per row (a 1-D vector is one row: still
        ``SearchResults``, of one list, as sentence-transformers' ``semantic_search`` does).

        ``vectors``: an ``(n, d)`` array already in this index's calibrated space, or the RAW query
        embeddings by part, as ``index.encoder.encode_query(items, modality)`` makes them
        (``{"text": (n, d)}``, ``{"image": ...}``, ``{"text": ..., "image": ...}`` for image+text
        queries), which this index calibrates first.
        """
        filter_, cut = self._check_arguments(k, modality, where, min_relevance)
        if isinstance(vectors, Mapping):
            vectors = self._calibrate(_raw_parts(vectors))
        return self._rank(np.atleast_2d(np.asarray(vectors, dtype=np.float32)), int(k), filter_, cut)

    def search_batch(
        self,
        texts: Sequence[str] | None = None,
        images: Sequence[ImageQuery] | None = None,
        *,
        audios: Sequence[MediaQuery] | None = None,
        videos: Sequence[MediaQuery] | None = None,
        k: int = 10,
        modality: str | Sequence[str] | None = None,
        where: str | None = None,
        embeddings: Mapping[str, np.ndarray] | None = None,
        min_relevance: float | None = None,
    ) -> SearchResults:
        """Deprecated: ``search([...])`` with a list of texts or ``Query`` objects, or
        ``search_vectors({part: raw embeddings})``. Kept one release."""
        warnings.warn(
            "MixIndex.search_batch is deprecated: use search([...]) (texts or Query objects) or "
            "search_vectors({part: raw embeddings})",
            DeprecationWarning,
            stacklevel=2,
        )
        options: dict[str, Any] = dict(k=k, modality=modality, where=where, min_relevance=min_relevance)
        given = {"text": texts, "image": images, "audio": audios, "video": videos}
        if embeddings is not None:
            if any(v is not None for v in given.values()):
                raise UsageError("give the query items or their embeddings, not both")
            return self.search_vectors(embeddings, **options)
        return self.search(_legacy_queries(given), **options)

    def embed_queries(
        self,
        texts: Sequence[str] | None = None,
        images: Sequence[ImageQuery] | None = None,
        *,
        audios: Sequence[MediaQuery] | None = None,
        videos: Sequence[MediaQuery] | None = None,
    ) -> dict[str, np.ndarray]:
        """Deprecated: ``index.encoder.encode_query(items, modality)`` gives raw query embeddings.
        Kept one release (the server still calls it)."""
        warnings.warn(
            "MixIndex.embed_queries is deprecated: use index.encoder.encode_query(items, modality)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._embed(_legacy_queries({"text": texts, "image": images, "audio": audios, "video": videos}))

    def _check_arguments(
        self, k: object, modality: str | Sequence[str] | None, where: str | None, min_relevance: float | None
    ) -> tuple[Filter | None, float | None]:
        """The search keywords checked against this index (so a mistake fails before any
        encoding): the filter and the relevance cut."""
        _check_k(k)
        cut = self.check_min_relevance(min_relevance)
        return self.filter(modality, where), cut

    def _query_vectors(self, queries: Sequence[Query]) -> np.ndarray:
        """The calibrated vectors of ``queries``, in their order: queries with the same parts are
        encoded together (one batch per part) and calibrated alike."""
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, q in enumerate(queries):
            groups.setdefault(q.parts, []).append(i)
        rows = [i for group in groups.values() for i in group]
        vectors = np.concatenate([self._calibrate(self._embed([queries[i] for i in g])) for g in groups.values()])
        return vectors[np.argsort(rows)]  # back to the order asked

    def _rank(self, vectors: np.ndarray, k: int, filter_: Filter | None, cut: float | None) -> SearchResults:
        """Hit lists of calibrated query vectors (arguments already checked)."""
        if self.calibrator.score_level:
            found = self._search_per_modality(vectors, k, filter_)
        else:
            found = self.index.search(vectors, k, filter_)
        # the documents as searched: hits made later (deferred) still show them after an add or delete
        make = partial(self._hits, self._rows, self.documents, self.metadata_fields)
        if self.calibrator.relevance_ is None:
            return SearchResults._deferred(found.ids, found.scores, make)
        return SearchResults([self._judge(make(ids, scores), cut) for ids, scores in zip(found.ids, found.scores)])

    @staticmethod
    def _hits(rows: Mapping[str, int], d: Mapping, fields: list[str], ids: Sequence[str], scores) -> list[Hit]:
        out = []
        for rank, (doc_id, score) in enumerate(zip(ids, scores), 1):
            row = rows[doc_id]
            metadata = {f: d[f][row] for f in fields if d[f][row] is not None}
            image, audio, video = (d[m][row] for m in MEDIA)
            out.append(
                Hit(rank, doc_id, float(score), d["modality"][row], d["text"][row], image, audio, video, metadata)
            )
        return out

    def _embed(self, queries: Sequence[Query]) -> dict[str, np.ndarray]:
        """Raw (uncalibrated) embeddings of queries that all have the same parts: one batch per part."""
        parts = queries[0].parts if queries else ()
        return {
            m: self.query_encoder(m).encode_query([getattr(q, m) for q in queries], m, progress=False) for m in parts
        }

    def _calibrate(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """Raw query embeddings -> the vectors searched. A text query takes the query mean, an
        image (audio, video) query the image (audio, video) mean; an image+text query is fused
        like a document (text part with the query mean)."""
        if set(parts) == {"text"}:
            return self.calibrator.transform(parts["text"], role="query")
        if len(parts) == 1:
            ((modality, x),) = parts.items()
            return self.calibrator.transform(x, role=modality)
        return self.calibrator.transform_documents(parts, roles={"text": "query"}, alpha=self.alpha)

    # -- relevance thresholds (calibration.relevance) ----------------------------------------

    def check_min_relevance(self, min_relevance: float | None) -> float | None:
        """``min_relevance`` checked for this index: None, or a number in [0, 1] when the
        calibration has a relevance map (a ``UsageError`` saying how to fit one otherwise)."""
        cut = _check_relevance_value(min_relevance)
        if cut is not None and self.calibrator.relevance_ is None:
            raise UsageError(
                f"{self.folder}: this index's calibration has no relevance map, so min_relevance cannot "
                "be applied; fit one on a labelled dataset with 'mixsearch fit-relevance DATASET --calibration "
                "FILE --out NEW' and apply it with 'mixsearch recalibrate INDEX --calibration NEW'"
            )
        return cut

    def _judge(self, hits: list[Hit], cut: float | None) -> list[Hit]:
        """Hits with their estimated relevance, those below ``cut`` dropped (in score order, renumbered)."""
        assert self.calibrator.relevance_ is not None
        rel = self.calibrator.relevance_.predict([h.score for h in hits], [h.modality for h in hits])
        kept = [(h, float(r)) for h, r in zip(hits, rel) if cut is None or r >= cut]
        return [replace(h, rank=rank, relevance=r) for rank, (h, r) in enumerate(kept, 1)]

    def _search_per_modality(self, vectors: np.ndarray, k: int, flt: Filter | None) -> Neighbours:
        """Score-level calibration (``zscore``, ``rrf``): the best ``k`` of each document modality
        the filter allows, searched apart (same filter, narrowed to that modality), then merged
        per query by the calibrator's merger (``Calibrator.merger()``); scores are the fixed ones."""
        present = [
            m for m in dict.fromkeys(self.modality.tolist()) if flt is None or flt.modality is None or m in flt.modality
        ]
        per = {
            m: self.index.search(vectors, k, dataclasses.replace(flt or Filter(), modality=frozenset([m])))
            for m in present
        }
        merger = self.calibrator.merger()
        scores = np.full((len(vectors), k), -np.inf)
        ids = []
        for q in range(len(vectors)):
            lists = {m: (found.ids[q], found.scores[q][: len(found.ids[q])]) for m, found in per.items()}
            top, fixed = merger.merge(lists, k)
            ids.append(top)
            scores[q, : len(top)] = fixed
        return Neighbours(scores, ids)

    def fields(self) -> dict[str, str]:
        """The fields a ``where`` condition may name, with their SQL types (``modality`` and
        each metadata field)."""
        from ..index.where import sql_type

        return {f.name: sql_type(f.type) for f in self._field_schema()}

    def _field_schema(self):
        import pyarrow as pa

        return pa.schema([self.data.table.schema.field(n) for n in ("modality", *self.metadata_fields)])

    def filter(self, modality: str | Sequence[str] | None = None, where: str | None = None) -> Filter | None:
        """The filter for ``modality`` and ``where``, checked against this index's fields (an
        unknown field or a wrong type is a ``UsageError`` listing the known fields) before any
        search or encoding."""
        filter_ = Filter.of(modality, where)
        if filter_ is not None:
            filter_.check(self._field_schema())
        return filter_

    # -- calibration ------------------------------------------------------------------------

    def raw(self) -> dict[str, np.ndarray]:
        """The stored raw embeddings of each modality (memory-mapped; zero rows where absent)."""
        return dict(self._raw)

    def with_calibration(
        self, calibration: CalibrationSpec, alpha: float | None = None, *, method: str | None = None
    ) -> MixIndex:
        """This index under another calibration and/or alpha: a view computed in memory from the
        stored raw embeddings, searchable at once; nothing on disk changes (see ``persist``).

        ``calibration``: a ``Calibrator``, a calibration file, ``"none"`` (plain CLIP), or None
        (fit document means on this corpus). ``method``: apply it under another calibration
        method (``calibration.METHODS``; with None, the method fitted on the corpus)."""
        alpha = self.alpha if alpha is None else alpha
        Calibrator(alpha=alpha).check_params()  # checks alpha before any work
        raw, present = self.raw(), presence(self.documents)
        notes: list[str] = []
        cal, source = resolve_calibration(calibration, self.model.to_dict(), raw, present, alpha, notes, method)
        if calibration is self.calibrator:  # the index's own calibration, kept (a new alpha, say)
            source = self.manifest.calibration.source or source
        fitted_alpha = cal.relevance_.info.get("alpha") if cal.relevance_ is not None else None
        if fitted_alpha is not None and float(fitted_alpha) != alpha:
            notes.append(f"the relevance map was fitted at alpha {fitted_alpha}: image+text relevance may be off")
        vectors = fuse_documents(cal, alpha, raw, present, len(self), self.model.dim)
        index = build_index_of_kind(
            self.manifest.index.kind,
            vectors,
            self.ids,
            store.field_columns(self.data.table),
            options=dict(self.manifest.index.options),
        )
        manifest = self.manifest.replace(calibration=CalibrationRecord.of(cal, source, notes))
        view = MixIndex(
            self.folder,
            manifest,
            self.data,
            cal,
            index,
            encoder=self._encoder,
            device=self.device,
            runtime=self.runtime,
            view=True,
        )
        view._light, view._encoder_given = self._light, self._encoder_given  # the same model, encoded alike
        return view

    def persist(self) -> MixIndex:
        """Write this view's calibration and vectors into the index folder as its new state: a new
        generation, committed with one rename under the folder's write lock (the old state stays
        until the new one is complete). Refused if the folder changed since this index was opened.
        Returns the index, no longer a view."""
        if not self.is_view:
            return self
        with store.transaction(self.folder, expected=self.manifest) as txn:
            current = txn.current
            assert current is not None
            legacy = current.is_legacy  # an older format is upgraded: its data linked into the new generation
            manifest = store.record_files(self.manifest, txn.generation, keep_data_of=None if legacy else current)
            if legacy:
                _, segments = store.upgrade_data(self.folder, current, txn.generation)
                manifest = manifest.replace(segments=tuple(segments))
            save_calibration(self.calibrator, txn.paths["calibration"])
            self.index.save(txn.paths["index"])
            self.manifest = txn.commit(manifest)
        self.is_view = False
        log.info("%s: calibration %s, alpha %s written", self.folder, self.calibrator.method, self.alpha)
        return self

    # -- changes ----------------------------------------------------------------------------

    def add(
        self,
        corpus: str | Path | Sequence[Document],
        *,
        cache_dir: str | Path | None = None,
        progress: bool | None = None,
    ):
        """Add documents (a JSON Lines file, a folder, or ``Document`` objects): new ids are added,
        existing ids replaced. They are encoded with the index's own model and fused with its
        existing calibration and alpha, which stay as they were (refit with ``recalibrate``).
        One atomic change to the folder, writing only the new documents; returns an
        ``UpdateReport``."""
        from .update import add_documents

        report, changed = add_documents(self, corpus, cache_dir=cache_dir, progress=progress)
        self._become(changed)
        return report

    def delete(self, ids: Sequence[str]) -> int:
        """Delete documents by id (one atomic change to the folder); returns how many were there."""
        from .update import delete_documents

        deleted, changed = delete_documents(self, ids)
        if changed is not None:
            self._become(changed)
        return deleted

    def recalibrate(
        self, calibration: CalibrationSpec, alpha: float | None = None, *, method: str | None = None
    ) -> MixIndex:
        """Apply another calibration, alpha and/or method to this index and its folder, without
        re-encoding (``with_calibration`` then ``persist``). Returns this index, updated."""
        self._become(self.with_calibration(calibration, alpha, method=method).persist())
        return self


def _load(folder: Path, manifest: Manifest) -> tuple[store.Data, Calibrator, VectorIndex]:
    """The parts of the manifest's generation, checked to belong together and to the model."""
    files = store.files_of(folder, manifest)
    data = store.read_data(folder, manifest)
    if not files["calibration"].is_file():
        raise store.missing(files["calibration"])
    calibrator = load_calibration(files["calibration"])
    index = store.open_vector_index(folder, manifest, data.documents)
    store.check_integrity(folder, manifest, data.documents, data.raw, index)
    model = manifest.model
    try:
        calibrator.check_model(model.fingerprint, model.name)
        if calibrator.dim_ is not None and calibrator.dim_ != model.dim:
            raise CalibrationError(f"its means have dimension {calibrator.dim_}, the model {model.dim}")
    except CalibrationError as err:
        raise VectorIndexError(f"{folder}: the index's calibration does not fit its model: {err}") from None
    return data, calibrator, index


def _loading_options(model: ModelRecord) -> dict:
    """The encoder options an index records besides the model (frames sampled per video)."""
    return {"video_frames": model.video_frames} if model.video_frames is not None else {}


def _as_query(query: object, image: Any = None, audio: Any = None, video: Any = None) -> Query:
    """One query from what ``search`` was given: a ``Query``, or a text with the keyword media."""
    if isinstance(query, Query):
        if image is not None or audio is not None or video is not None:
            raise UsageError("give a Query's media inside it (Query(text, image=...)), not also as keywords")
        return query
    return Query(query, image, audio, video)  # type: ignore[arg-type]  # Query says what is wrong


def _legacy_queries(given: Mapping[str, Sequence[Any] | None]) -> list[Query]:
    """``search_batch``'s parallel lists (texts, images, audios, videos) as ``Query`` objects."""
    lists = {m: items for m, items in given.items() if items is not None}
    for m, items in lists.items():
        if isinstance(items, (str, Path)):  # never iterated as characters
            raise UsageError(f"search_batch takes lists of {m} queries, got one {type(items).__name__}: use search()")
    media = [m for m in lists if m != "text"]
    if not lists:
        raise UsageError("empty query: give a text, an image, an audio clip or a video (or a text with one)")
    if len(media) > 1:
        raise UsageError(f"one kind of media per query, not {' and '.join(media)} together")
    if len({len(items) for items in lists.values()}) > 1:
        (m,) = media
        raise UsageError(f"{len(lists['text'])} texts and {len(lists[m])} {m} items: {m}+text queries come in pairs")
    return [Query(**dict(zip(lists, parts))) for parts in zip(*lists.values())]


def _raw_parts(parts: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw query embeddings by part, checked: known parts, at most one medium, rows paired."""
    if not parts or set(parts) - set(MODALITIES):
        raise UsageError(f"raw query embeddings come by part ({', '.join(MODALITIES)}), got {sorted(parts)}")
    media = [m for m in parts if m != "text"]
    if len(media) > 1:
        raise UsageError(f"one kind of media per query, not {' and '.join(media)} together")
    arrays = {m: np.atleast_2d(np.asarray(x, dtype=np.float32)) for m, x in parts.items()}
    if len({len(x) for x in arrays.values()}) > 1:
        raise UsageError(f"raw query embeddings of {' and '.join(media)}+text queries come in pairs")
    return arrays


def _check_k(k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"k must be a positive whole number, got {k!r}")


def open_index(
    folder: str | Path, *, encoder: Encoder | str | None = None, device: str | None = None, runtime: str = "auto"
) -> MixIndex:
    """Open an index folder for search. ``encoder``: an already loaded model (or its name) to
    use instead of loading the one the index records on the first query; ``device`` and
    ``runtime`` say how that model runs (see ``load_encoder``)."""
    if isinstance(encoder, str):
        encoder = load_encoder(encoder, device=device, runtime=runtime)
    folder = Path(folder)
    deadline, attempt = time.monotonic() + OPEN_RETRY_SECONDS, 0
    while True:
        manifest = store.read_manifest(folder)
        try:
            data, calibrator, index = _load(folder, manifest)
            break
        except (FileNotFoundError, MixsearchError) as err:
            # a writer may have committed a new generation (and removed this one) meanwhile: retry,
            # backing off a little, for as long as the folder keeps moving on (a writer committing
            # back to back can outpace a slow reader several times in a row)
            if store.read_manifest(folder) != manifest and time.monotonic() < deadline:
                attempt += 1
                time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.2)))  # jitter: no lockstep
                continue
            if store.read_manifest(folder) != manifest:
                raise VectorIndexError(
                    f"{folder}: the index kept changing while it was being opened; try again"
                ) from None
            if isinstance(err, FileNotFoundError):
                raise VectorIndexError(
                    f"{folder}: damaged index: {err.filename} is missing; rebuild it with 'mixsearch index'"
                ) from None
            raise
    return MixIndex(folder, manifest, data, calibrator, index, encoder=encoder, device=device, runtime=runtime)

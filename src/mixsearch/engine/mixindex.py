"""An index folder opened for search.

``MixIndex`` answers text, image and image+text queries, one at a time (``search``) or in batches
(``search_batch``), through one path: encode -> calibrate the queries -> vector index -> hits. The
encoder loads on the first query that needs it. ``with_calibration`` gives a view of the same
index under another calibration or alpha, computed in memory from the stored raw embeddings;
``persist`` writes a view to the folder, and ``recalibrate`` does both in place.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, overload

import numpy as np

from ..calibration import Calibrator, load_calibration, save_calibration
from ..calibration.relevance import check_min_relevance as _check_relevance_value
from ..encoders import Encoder, load_encoder
from ..errors import CalibrationError, MixsearchError, UsageError, VectorIndexError
from ..index import Filter, Neighbours, VectorIndex, build_index_of_kind
from ..types import MEDIA, Document, Hit
from . import store
from .fuse import CalibrationSpec, fuse_documents, presence, resolve_calibration

log = logging.getLogger(__name__)
#: How long opening an index keeps retrying while writers keep committing new generations under it.
OPEN_RETRY_SECONDS = 30.0

#: What a query image may be: a path to an image file, or an already loaded image (PIL).
ImageQuery = Any
#: What a query audio clip or video may be: a path to its file, or an already loaded one
#: (``ingest.audio.Audio``, ``ingest.video.Video``).
MediaQuery = Any


class SearchResults(Sequence[list[Hit]]):
    """The hit lists of a batch of queries, in query order (``results[i]`` is query ``i``'s)."""

    def __init__(self, hits: list[list[Hit]]):
        self.hits = hits

    def __len__(self) -> int:
        return len(self.hits)

    @overload
    def __getitem__(self, i: int) -> list[Hit]: ...

    @overload
    def __getitem__(self, i: slice) -> list[list[Hit]]: ...

    def __getitem__(self, i):
        return self.hits[i]

    def __iter__(self) -> Iterator[list[Hit]]:
        return iter(self.hits)

    def ids(self) -> list[list[str]]:
        """The document ids of each query's hits, best first."""
        return [[h.id for h in hits] for hits in self.hits]

    def to_dicts(self) -> list[list[dict]]:
        """Every hit as a JSON-ready dict, per query."""
        return [[h.to_dict() for h in hits] for hits in self.hits]

    def __repr__(self) -> str:
        return f"SearchResults({len(self)} queries, {sum(map(len, self.hits))} hits)"


def calibration_record(cal: Calibrator, source: str) -> dict:
    """How the manifest describes a calibration."""
    return {
        "method": cal.method,
        "alpha": cal.alpha,
        **({"lambda": cal.shift_lambda} if cal.method == "shift" else {}),
        **({"rrf_k": cal.rrf_k} if cal.method == "rrf" else {}),
        "source": source,
        "counts": cal.counts_,
        "fitted_for": cal.fitted_for,
        "provenance": cal.provenance,
        **({"relevance": cal.relevance_.describe()} if cal.relevance_ is not None else {}),
    }


class MixIndex:
    """An index folder opened for search (``open_index``); the encoder loads on first use."""

    def __init__(
        self, folder: str | Path, *, encoder: Encoder | None = None, device: str | None = None, runtime: str = "auto"
    ):
        folder = Path(folder)
        self.runtime = runtime
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
        self._setup(folder, manifest, data, calibrator, index, encoder, device, view=False)

    def _setup(
        self,
        folder: Path,
        manifest: dict,
        data: store.Data,
        calibrator: Calibrator,
        index: VectorIndex,
        encoder: Encoder | None,
        device: str | None,
        view: bool,
    ) -> None:
        self.folder = folder
        self.manifest = manifest
        self.data = data
        self.documents = data.documents
        self.ids: list[str] = self.documents["id"]
        self.modality = np.asarray(self.documents["modality"])
        self.metadata_fields = [n for n in data.table.column_names if n not in store.OWN_COLUMNS]
        self.calibrator = calibrator
        self.index = index
        self.device = device
        self.is_view = view
        self._raw = data.raw
        self._row_of: dict[str, int] | None = None  # id -> row, built on first need (O(n))
        self._encoder = encoder
        self._encoder_lock = threading.Lock()
        if encoder is not None:
            self._check_encoder(encoder)

    @property
    def _rows(self) -> dict[str, int]:
        """Each document id's row (built once, on the first hit or change that needs it)."""
        if self._row_of is None:
            self._row_of = {doc_id: row for row, doc_id in enumerate(self.ids)}
        return self._row_of

    # -- what it is -------------------------------------------------------------------------

    @property
    def model(self) -> dict:
        """The model the index was built with (name, fingerprint, dim, modalities)."""
        return self.manifest["model"]

    @property
    def alpha(self) -> float:
        """The text weight of multimodal documents in this index (or view)."""
        return float(self.manifest["calibration"]["alpha"])

    @property
    def encoder(self) -> Encoder:
        """The index's model, loaded once on first use (thread-safe)."""
        with self._encoder_lock:
            if self._encoder is None:
                encoder = load_encoder(
                    self.model["name"], device=self.device, runtime=self.runtime, **_loading_options(self.model)
                )
                self._check_encoder(encoder)
                self._encoder = encoder
        return self._encoder

    def _check_encoder(self, encoder: Encoder) -> None:
        frames = self.model.get("video_frames")
        if frames is not None and encoder.info().get("video_frames", frames) != frames:
            raise CalibrationError(
                f"{self.folder} was built sampling {frames} frames per video; {encoder.name!r} samples "
                f"{encoder.info().get('video_frames')}: load it with video_frames={frames}"
            )
        if encoder.fingerprint != self.model["fingerprint"] or encoder.dim != self.model["dim"]:
            raise CalibrationError(
                f"{self.folder} was built with model {self.model['name']!r} (fingerprint "
                f"{self.model['fingerprint']}, dim {self.model['dim']}); {encoder.name!r} (fingerprint "
                f"{encoder.fingerprint}, dim {encoder.dim}) cannot query it"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def manifest_to_change(self) -> dict:
        """The manifest on disk, for a writer holding the folder's lock: it must still be the state
        this object was opened at (a change made from a stale view would undo someone else's)."""
        current = store.read_manifest(self.folder)
        if (current.get("generation"), current.get("created")) != (
            self.manifest.get("generation"),
            self.manifest.get("created"),
        ):
            raise VectorIndexError(
                f"{self.folder} was changed by someone else since it was opened; open it again and redo the change"
            )
        return current

    def is_stale(self) -> bool:
        """Whether the folder now holds another state than this object (rebuilt or recalibrated
        since it was opened); reopen it with ``open_index`` to see the new one."""
        try:
            current = store.read_manifest(self.folder)
        except MixsearchError:
            return True
        return (current.get("generation"), current.get("created")) != (
            self.manifest.get("generation"),
            self.manifest.get("created"),
        )

    def __repr__(self) -> str:
        view = ", view" if self.is_view else ""
        cal = self.manifest["calibration"]
        return f"MixIndex({str(self.folder)!r}, {len(self)} documents, {cal['method']} alpha={cal['alpha']}{view})"

    # -- queries ----------------------------------------------------------------------------

    def search(
        self,
        text: str | None = None,
        image: ImageQuery | None = None,
        *,
        audio: MediaQuery | None = None,
        video: MediaQuery | None = None,
        k: int = 10,
        modality: str | Sequence[str] | None = None,
        where: str | None = None,
        min_relevance: float | None = None,
    ) -> list[Hit]:
        """Search with a text, an image (a path or a PIL image), an audio clip or a video (paths),
        or a text with one of those (e.g. an image+text query).

        ``modality`` keeps only documents of that modality (or those modalities): ``text``,
        ``image``, ``audio``, ``video`` or ``multimodal``. ``where`` keeps only documents whose
        metadata fields pass an SQL condition (``"year >= 2020 AND source = 'wiki'"``, DuckDB's
        SQL); both filters apply before the top ``k``, so k hits come back whenever k qualify.
        ``min_relevance`` drops hits whose estimated relevance (the calibration's relevance map)
        is below it, so fewer than ``k`` may come back.
        """
        if text is not None and not isinstance(text, str):
            raise UsageError(f"text must be a string, not {type(text).__name__}; pass an image as image=...")
        one = lambda x: None if x is None else [x]  # noqa: E731
        return self.search_batch(
            one(text),
            one(image),
            audios=one(audio),
            videos=one(video),
            k=k,
            modality=modality,
            where=where,
            min_relevance=min_relevance,
        )[0]

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
        """Search with many queries at once: texts, images, audio clips, videos, or texts paired
        with one of the others (same length).

        ``embeddings`` gives raw query embeddings (``{"text": (n, d), "image": (n, d)}``, as the
        index's encoder makes them) instead of the items, skipping the encoding.
        """
        _check_k(k)
        self.filter(modality, where)  # bad arguments fail before the model loads
        self.check_min_relevance(min_relevance)
        given = {"texts": texts, "images": images, "audios": audios, "videos": videos}
        if embeddings is None:
            embeddings = self.embed_queries(texts, images, audios=audios, videos=videos)
        elif any(v is not None for v in given.values()):
            raise UsageError("give the query items or their embeddings, not both")
        return self.search_vectors(
            self.calibrate_queries(embeddings), k=k, modality=modality, where=where, min_relevance=min_relevance
        )

    def embed_queries(
        self,
        texts: Sequence[str] | None = None,
        images: Sequence[ImageQuery] | None = None,
        *,
        audios: Sequence[MediaQuery] | None = None,
        videos: Sequence[MediaQuery] | None = None,
    ) -> dict[str, np.ndarray]:
        """Raw (uncalibrated) query embeddings of each part given."""
        media = {
            m: items for m, items in (("image", images), ("audio", audios), ("video", videos)) if items is not None
        }
        if texts is None and not media:
            raise UsageError("empty query: give a text, an image, an audio clip or a video (or a text with one)")
        if len(media) > 1:
            raise UsageError(f"one kind of media per query, not {' and '.join(media)} together")
        sizes = {len(items) for items in media.values()} | ({len(texts)} if texts is not None else set())
        if len(sizes) > 1:
            (m,) = media
            raise UsageError(f"{len(texts or [])} texts and {len(media[m])} {m} items: {m}+text queries come in pairs")
        parts = {}
        if texts is not None:
            texts = list(texts)
            for t in texts:
                if not isinstance(t, str) or not t.strip():
                    raise UsageError(f"empty or non-text query {t!r}")
            parts["text"] = self.encoder.encode(texts, "text", progress=False)
        for m, items in media.items():
            parts[m] = self.encoder.encode(list(items), m, progress=False)
        return parts

    def calibrate_queries(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """Raw query embeddings -> the vectors searched. A text query takes the query mean, an
        image (audio, video) query the image (audio, video) mean; an image+text query is fused
        like a document (text part with the query mean)."""
        if set(parts) == {"text"}:
            return self.calibrator.transform(parts["text"], role="query")
        if len(parts) == 1:
            ((modality, x),) = parts.items()
            return self.calibrator.transform(x, role=modality)
        return self.calibrator.transform_documents(parts, roles={"text": "query"}, alpha=self.alpha)

    def search_vectors(
        self,
        vectors: np.ndarray,
        *,
        k: int = 10,
        modality: str | Sequence[str] | None = None,
        where: str | None = None,
        min_relevance: float | None = None,
    ) -> SearchResults:
        """Rank the index for already calibrated query vectors, one hit list per row."""
        _check_k(k)
        cut = self.check_min_relevance(min_relevance)
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        filter_ = self.filter(modality, where)
        if self.calibrator.score_level:
            found = self._search_per_modality(vectors, int(k), filter_)
        else:
            found = self.index.search(vectors, int(k), filter_)
        hits = [
            [self._hit(rank, doc_id, float(score)) for rank, (doc_id, score) in enumerate(zip(ids, scores), 1)]
            for ids, scores in zip(found.ids, found.scores)
        ]
        return SearchResults(hits if self.calibrator.relevance_ is None else [self._judge(h, cut) for h in hits])

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

    def _hit(self, rank: int, doc_id: str, score: float) -> Hit:
        row, d = self._rows[doc_id], self.documents
        metadata = {f: d[f][row] for f in self.metadata_fields if d[f][row] is not None}
        image, audio, video = (d[m][row] for m in MEDIA)
        return Hit(rank, doc_id, score, d["modality"][row], d["text"][row], image, audio, video, metadata)

    def fields(self) -> dict[str, str]:
        """The fields a ``where`` condition may name, with their SQL types (``modality`` and
        each metadata field)."""
        from ..index.where import _sql_type

        return {f.name: _sql_type(f.type) for f in self._field_schema()}

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
        cal, source = resolve_calibration(calibration, self.model, raw, present, alpha, notes, method)
        if calibration is self.calibrator:  # the index's own calibration, kept (a new alpha, say)
            source = self.manifest["calibration"]["source"]
        fitted_alpha = cal.relevance_.info.get("alpha") if cal.relevance_ is not None else None
        if fitted_alpha is not None and float(fitted_alpha) != alpha:
            notes.append(f"the relevance map was fitted at alpha {fitted_alpha}: image+text relevance may be off")
        vectors = fuse_documents(cal, alpha, raw, present, len(self), self.model["dim"])
        index = build_index_of_kind(
            self.manifest["index"]["kind"],
            vectors,
            self.ids,
            store.field_columns(self.data.table),
            options=self.manifest["index"].get("options"),
        )
        manifest = {**self.manifest, "calibration": {**calibration_record(cal, source), "notes": notes}}
        view = object.__new__(MixIndex)
        view._setup(self.folder, manifest, self.data, cal, index, self._encoder, self.device, view=True)
        view.runtime = self.runtime
        return view

    def persist(self) -> MixIndex:
        """Write this view's calibration and vectors into the index folder as its new state: a new
        generation, committed with one rename under the folder's write lock (the old state stays
        until the new one is complete). Refused if the folder changed since this index was opened.
        Returns the index, no longer a view."""
        if not self.is_view:
            return self
        with store.writing(self.folder):
            current = self.manifest_to_change()
            generation = store.next_generation(current)
            legacy = current["format"] in store.LEGACY_FORMATS
            manifest = store.record_files(self.manifest, generation, keep_data_of=None if legacy else current)
            paths = {role: self.folder / name for role, name in manifest["files"].items()}
            new = [paths["calibration"], paths["index"]] + ([paths["documents"], paths["raw"]] if legacy else [])
            store.clear(new)
            try:
                if legacy:
                    _, manifest["segments"] = store.upgrade_data(self.folder, current, generation)
                save_calibration(self.calibrator, paths["calibration"])
                self.index.save(paths["index"])
                store.publish(self.folder, manifest, new)
            except BaseException:
                if not store.is_committed(self.folder, generation):
                    store.clear(new)  # not committed: the current generation is untouched
                raise
            self.manifest = manifest
            store.tidy(self.folder, manifest, current)
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

        return add_documents(self, corpus, cache_dir=cache_dir, progress=progress)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete documents by id (one atomic change to the folder); returns how many were there."""
        from .update import delete_documents

        return delete_documents(self, ids)

    def recalibrate(
        self, calibration: CalibrationSpec, alpha: float | None = None, *, method: str | None = None
    ) -> MixIndex:
        """Apply another calibration, alpha and/or method to this index and its folder, without
        re-encoding (``with_calibration`` then ``persist``). Returns this index, updated."""
        view = self.with_calibration(calibration, alpha, method=method).persist()
        self._setup(
            view.folder, view.manifest, view.data, view.calibrator, view.index, self._encoder, self.device, view=False
        )
        return self


def _load(folder: Path, manifest: dict) -> tuple[store.Data, Calibrator, VectorIndex]:
    """The parts of the manifest's generation, checked to belong together and to the model."""
    files = store.files_of(folder, manifest)
    data = store.read_data(folder, manifest)
    if not files["calibration"].is_file():
        raise store.missing(files["calibration"])
    calibrator = load_calibration(files["calibration"])
    index = store.open_vector_index(folder, manifest, data.documents)
    store.check_integrity(folder, manifest, data.documents, data.raw, index)
    model = manifest["model"]
    try:
        calibrator.check_model(model["fingerprint"], model["name"])
        if calibrator.dim_ is not None and calibrator.dim_ != model["dim"]:
            raise CalibrationError(f"its means have dimension {calibrator.dim_}, the model {model['dim']}")
    except CalibrationError as err:
        raise VectorIndexError(f"{folder}: the index's calibration does not fit its model: {err}") from None
    return data, calibrator, index


def _loading_options(model: Mapping) -> dict:
    """The encoder options an index records besides the model (frames sampled per video)."""
    return {"video_frames": int(model["video_frames"])} if model.get("video_frames") is not None else {}


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
    return MixIndex(folder, encoder=encoder, device=device, runtime=runtime)

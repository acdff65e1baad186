"""Search: the engine that ties ingest → encode → calibrate → index together.

``fit_calibration`` fits means from calibration files, streaming; ``build_index`` encodes a corpus
(through the embedding cache, so an interrupted build resumes), calibrates, fuses and writes an
index folder; ``open_index`` returns a ``MixIndex`` that answers text or image queries. The CLI and
the benchmark harness both go through these functions.

An index folder holds:
  manifest.json            model, calibration, counts, what was skipped
  documents.parquet        id, modality, text, media paths (one row per indexed document)
  raw/<modality>.npy       raw normalised embeddings (zero rows where a document lacks the part)
  calibration.safetensors  the calibration applied
  vectors.npy, ids.json    the calibrated, fused document vectors the index searches
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from . import __version__
from .cache import EmbeddingCache
from .calibrate import Calibrator, CalibrationError
from .calibration_file import load_calibration, save_calibration
from .encode import Encoder, cache_root, embed, load_encoder
from .index import ExactIndex, load_index
from .ingest import MODALITIES, Document, InputError, Problem, looks_like_image, read_corpus, read_items

FORMAT = "mixsearch-index/1"
CHUNK = 4096  # documents encoded and written per step: bounds memory, and progress is saved per batch


@dataclass
class BuildReport:
    """What a build did: counts, and every problem with where it happened."""

    indexed: int = 0
    encoded: int = 0
    from_cache: int = 0
    truncated: int = 0
    problems: list[Problem] = field(default_factory=list)
    skipped_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"indexed {self.indexed} documents in {self.seconds:.1f} s "
            f"({self.encoded} items encoded, {self.from_cache} from cache)"
        ]
        if self.truncated:
            lines.append(f"{self.truncated} texts were longer than the model's context and were truncated")
        if self.skipped_ids or self.problems:
            lines.append(f"{len(self.skipped_ids)} documents skipped; {len(self.problems)} problems:")
            lines += [f"  - {p}" for p in self.problems[:50]]
            if len(self.problems) > 50:
                lines.append(f"  ... and {len(self.problems) - 50} more (all are in manifest.json)")
        return "\n".join(lines + self.notes)


def _cache_for(encoder: Encoder, cache_dir: str | Path | None) -> EmbeddingCache:
    return EmbeddingCache(cache_dir or cache_root(), encoder.fingerprint, encoder.dim)


def _batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def fit_calibration(
    encoder: Encoder,
    queries: str | Path | None = None,
    texts: str | Path | None = None,
    images: str | Path | None = None,
    audio: str | Path | None = None,
    video: str | Path | None = None,
    method: str = "mean",
    alpha: float = 0.5,
    cache_dir: str | Path | None = None,
    report: Callable[[Problem], None] | None = None,
    progress: bool = False,
) -> Calibrator:
    """Fit per-role means from calibration files, streaming in constant memory.

    ``queries`` and ``texts`` are text files (one item per line) or JSON Lines with a ``text``
    field; ``images`` (``audio``, ``video``) a folder or JSON Lines with an ``image`` field.
    Each may also be a list of items (texts, or media paths) already in memory.
    """
    sources = {"query": queries, "text": texts, "image": images, "audio": audio, "video": video}
    sources = {role: p if isinstance(p, (list, tuple)) else Path(p) for role, p in sources.items() if p is not None}
    if method != "none" and not sources:
        raise CalibrationError("nothing to fit: give query, text or image calibration files")
    cal = Calibrator(method=method, alpha=alpha)
    cal.fitted_for = {"name": encoder.name, "fingerprint": encoder.fingerprint, "dim": str(encoder.dim)}
    cal.provenance = {"fitted_on": {role: f"{len(p)} items given in memory" if isinstance(p, (list, tuple)) else str(p)
                                    for role, p in sources.items()}}
    if method == "none":
        return cal
    cache = _cache_for(encoder, cache_dir)
    for role, path in sources.items():
        modality = "text" if role == "query" else role
        items = path if isinstance(path, (list, tuple)) else read_items(path, modality, report or (lambda p: None))
        for batch in _batched(items, CHUNK):
            out = embed(encoder, batch, modality, cache=cache, report=report, progress=progress)
            cal.partial_fit(out.vectors[out.ok], role)
        if role not in cal.counts_:
            raise CalibrationError(f"{_describe(path)}: no usable {role} items to fit a mean on")
    return cal


def _describe(source) -> str:
    return f"the {len(source)} items given" if isinstance(source, (list, tuple)) else str(source)


def build_index(
    corpus: str | Path | Sequence[Document],
    out: str | Path,
    encoder: Encoder | str,
    calibration: Calibrator | str | Path | None = None,
    alpha: float = 0.5,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple["MixIndex", BuildReport]:
    """Encode, calibrate, fuse and write an index folder; returns it opened, with a report.

    ``calibration``: a ``Calibrator``, a calibration file, ``"none"`` (plain CLIP), or ``None``
    to fit document means from this corpus (the query mean then borrows the text mean).
    The new index is written beside ``out`` and swapped in at the end, so a failed or
    interrupted build never damages an existing index; rerunning resumes from the cache.
    """
    started = time.perf_counter()
    out = Path(out)
    _check_out(out, corpus)
    encoder = load_encoder(encoder) if isinstance(encoder, str) else encoder
    report = BuildReport()
    if isinstance(corpus, (str, Path)):
        docs = list(read_corpus(corpus, report.problems.append))
        corpus_name = str(corpus)
    else:
        docs, corpus_name, seen = [], "<documents>", set()
        for d in corpus:
            if d.id in seen:
                report.problems.append(Problem(d.where or d.id, "duplicate id; later document skipped", d.id))
                continue
            seen.add(d.id)
            docs.append(d)
    unsupported = [d for d in docs if set(d.parts) - encoder.modalities]
    for d in unsupported:
        missing = ", ".join(sorted(set(d.parts) - encoder.modalities))
        report.problems.append(Problem(d.where or d.id, f"model {encoder.name!r} cannot encode {missing}; skipped", d.id))
    docs = [d for d in docs if not set(d.parts) - encoder.modalities]

    staging = out.with_name(out.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "raw").mkdir(parents=True)
    cache = _cache_for(encoder, cache_dir)
    docs, raw = _encode_documents(docs, encoder, cache, staging / "raw", report, progress, log)

    calibrator, source = _calibrator_for(calibration, encoder.info(), raw, docs, alpha, report)
    save_calibration(calibrator, staging / "calibration.safetensors", calibrator.provenance)
    _write_vectors(staging / "vectors.npy", calibrator, raw, docs, encoder.dim)
    _write_documents(staging / "documents.parquet", docs)
    ExactIndex(np.load(staging / "vectors.npy", mmap_mode="r"), [d.id for d in docs]).save(staging)
    report.indexed = len(docs)
    report.seconds = time.perf_counter() - started
    manifest = {
        "format": FORMAT,
        "mixsearch": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "corpus": corpus_name,
        "model": encoder.info(),
        "index": {"kind": ExactIndex.kind},
        "calibration": _calibration_record(calibrator, source),
        "documents": {"total": len(docs), **{m: sum(d.modality == m for d in docs) for m in (*MODALITIES, "multimodal")}},
        "build": {"encoded": report.encoded, "from_cache": report.from_cache, "truncated": report.truncated,
                  "seconds": round(report.seconds, 2), "skipped_ids": report.skipped_ids,
                  "problems": [str(p) for p in report.problems], "notes": report.notes},
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    _swap_in(staging, out)
    cache.close()
    return MixIndex(out, encoder=encoder), report


def _encode_documents(docs, encoder, cache, folder: Path, report: BuildReport, progress, log):
    """Encode every part of every document into ``folder/<modality>.npy`` (memory-mapped, zero
    rows where a document lacks the part); keep only the documents whose every part encoded."""
    modalities = [m for m in MODALITIES if any(getattr(d, m) is not None for d in docs)]
    ok = np.ones(len(docs), dtype=bool)
    everything = {}
    for m in modalities:
        everything[m] = np.lib.format.open_memmap(folder / f"{m}.all.npy", "w+", np.float32, (len(docs), encoder.dim))
        rows = [i for i, d in enumerate(docs) if getattr(d, m) is not None]
        log(f"encoding {len(rows)} {m} parts with {encoder.name}")
        for chunk in _batched(rows, CHUNK):
            items = [getattr(docs[i], m) if m == "text" else str(getattr(docs[i], m)) for i in chunk]
            where = [f"{docs[i].where or docs[i].id} (document {docs[i].id!r})" for i in chunk]
            result = embed(encoder, items, m, cache=cache, report=report.problems.append, where=where, progress=progress)
            everything[m][chunk] = result.vectors
            ok[np.asarray(chunk)[~result.ok]] = False
            report.encoded += int(result.ok.sum()) - result.from_cache
            report.from_cache += result.from_cache
            report.truncated += int(result.truncated.sum())
    report.skipped_ids = [d.id for d, good in zip(docs, ok) if not good]
    keep = np.flatnonzero(ok)
    raw = {}
    for m in modalities:
        raw[m] = np.lib.format.open_memmap(folder / f"{m}.npy", "w+", np.float32, (len(keep), encoder.dim))
        for start in range(0, len(keep), CHUNK):
            raw[m][start : start + CHUNK] = everything[m][keep[start : start + CHUNK]]
        raw[m].flush()
        del everything[m]
        (folder / f"{m}.all.npy").unlink()
    return [docs[i] for i in keep], raw


def _check_out(out: Path, corpus) -> None:
    """The index folder is replaced whole: never let that be anything but an index."""
    if isinstance(corpus, (str, Path)):
        source = Path(corpus).resolve()
        if source == out.resolve() or out.resolve() in source.parents:
            raise InputError(f"{out}: the index folder would replace the corpus {corpus}; choose another --out")
    if out.exists():
        if not out.is_dir():
            raise InputError(f"{out}: exists and is not a folder; choose another --out")
        is_index = (out / "manifest.json").is_file() and json.loads((out / "manifest.json").read_text()).get("format") == FORMAT
        if not is_index and any(out.iterdir()):
            raise InputError(f"{out}: exists and is not a mixsearch index; refusing to replace it (choose another --out)")


def _calibration_record(cal: Calibrator, source: str) -> dict:
    return {"method": cal.method, "alpha": cal.alpha, "source": source, "counts": cal.counts_,
            "fitted_for": cal.fitted_for, "provenance": cal.provenance}


def _calibrator_for(calibration, model: dict, raw, docs, alpha, report) -> tuple[Calibrator, str]:
    """Resolve the ``calibration`` argument for an index whose model is ``model`` (name, fingerprint, dim)."""
    if isinstance(calibration, Calibrator):
        cal, source = copy.deepcopy(calibration), "given"  # alpha is set below: never on the caller's object
    elif calibration is None:
        cal = Calibrator("mean", alpha)
        for m, matrix in raw.items():
            for start in range(0, len(docs), CHUNK):
                block = np.asarray(matrix[start : start + CHUNK])
                cal.partial_fit(block[np.any(block != 0, axis=1)], m)
        note = "no calibration given: document means were fitted on this corpus"
        query_mean = "borrowed from the document-text mean"
        if "text" in cal.counts_:
            cal.set_mean("query", cal.means_["text"], cal.counts_["text"])
            note += "; queries borrow the document-text mean (fit a query mean with `mixsearch calibrate --queries`)"
        else:
            query_mean = "none (no text documents): text queries are not calibrated"
        # a role with nothing to fit on stays plain (mean zero), so every query kind still works
        cal.zero_roles = {"query", "text", "image"} - set(cal.counts_)
        if cal.zero_roles:
            note += f"; no {', '.join(sorted(cal.zero_roles))} items here: those stay uncalibrated (mean zero)"
        report.notes.append(note)
        cal.fitted_for = {"name": model["name"], "fingerprint": model["fingerprint"], "dim": str(model["dim"])}
        cal.provenance = {"fitted_on": "the indexed corpus (document means)", "query_mean": query_mean}
        source = "corpus"
    elif str(calibration) == "none":
        cal, source = Calibrator("none", alpha), "none"
    else:
        cal, source = load_calibration(calibration), str(calibration)
    cal.check_model(model["fingerprint"], model["name"])
    cal.alpha = alpha
    return cal, source


def _write_vectors(path: Path, calibrator: Calibrator, raw: dict, docs: list[Document], dim: int) -> None:
    vectors = np.lib.format.open_memmap(path, "w+", np.float32, (len(docs), dim))
    for start in range(0, len(docs), CHUNK):
        block = docs[start : start + CHUNK]
        present = {m: np.array([getattr(d, m) is not None for d in block], dtype=bool) for m in raw}
        parts = {m: np.asarray(raw[m][start : start + CHUNK]) for m in raw}
        vectors[start : start + len(block)] = calibrator.transform_documents(parts, present) if block else 0
    vectors.flush()


def _write_documents(path: Path, docs: list[Document]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {
        "id": [d.id for d in docs],
        "modality": [d.modality for d in docs],
        "text": [d.text for d in docs],
        **{m: [None if getattr(d, m) is None else str(getattr(d, m)) for d in docs] for m in MODALITIES[1:]},
    }
    pq.write_table(pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()}), path)


def _swap_in(staging: Path, out: Path) -> None:
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


@dataclass
class Hit:
    rank: int
    id: str
    score: float
    modality: str
    text: str | None = None
    image: str | None = None
    audio: str | None = None
    video: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class MixIndex:
    """An index folder opened for search. The encoder loads lazily, on the first text or image query."""

    def __init__(self, folder: str | Path, encoder: Encoder | None = None, device: str | None = None):
        import pyarrow.parquet as pq

        self.folder = Path(folder)
        manifest_path = self.folder / "manifest.json"
        if not manifest_path.is_file():
            raise InputError(f"{self.folder}: not a mixsearch index (no manifest.json)")
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest.get("format") != FORMAT:
            raise InputError(f"{self.folder}: unknown index format {self.manifest.get('format')!r}")
        self.documents = pq.read_table(self.folder / "documents.parquet").to_pydict()
        self.ids = self.documents["id"]
        self.modality = np.asarray(self.documents["modality"])
        self.calibrator = load_calibration(self.folder / "calibration.safetensors")
        self.index = load_index(self.folder, self.manifest["index"]["kind"])
        self.device = device
        self._encoder = encoder
        if encoder is not None:
            self._check_encoder(encoder)

    @property
    def model(self) -> dict:
        return self.manifest["model"]

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = load_encoder(self.model["name"], device=self.device)
            self._check_encoder(self._encoder)
        return self._encoder

    def _check_encoder(self, encoder: Encoder) -> None:
        if encoder.fingerprint != self.model["fingerprint"] or encoder.dim != self.model["dim"]:
            raise CalibrationError(
                f"{self.folder} was built with model {self.model['name']!r} (fingerprint "
                f"{self.model['fingerprint']}, dim {self.model['dim']}); {encoder.name!r} (fingerprint "
                f"{encoder.fingerprint}, dim {encoder.dim}) cannot query it"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def encode_queries(self, texts: Sequence[str] | None = None, images: Sequence | None = None) -> np.ndarray:
        """Raw query embeddings -> calibrated query vectors. With both texts and images, each
        query is the fused pair (text part takes the query mean, image part the image mean)."""
        parts = {}
        if texts is not None:
            parts["text"] = self.encoder.encode(list(texts), "text")
        if images is not None:
            parts["image"] = self.encoder.encode(list(images), "image")  # paths or PIL images
        return self.calibrate_queries(parts)

    def calibrate_queries(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        if set(parts) == {"text"}:
            return self.calibrator.transform(parts["text"], role="query")
        if set(parts) == {"image"}:
            return self.calibrator.transform(parts["image"], role="image")
        return self.calibrator.transform_documents(parts, roles={"text": "query"})

    def search_vectors(self, queries: np.ndarray, k: int = 10, modality: str | None = None) -> list[list[Hit]]:
        """Rank the index for already-calibrated query vectors (one hit list per query)."""
        allowed = None
        if modality:
            if modality not in (*MODALITIES, "multimodal"):
                raise InputError(f"unknown modality {modality!r}; expected text, image, audio, video or multimodal")
            allowed = self.modality == modality
        scores, rows = self.index.search(queries, k, allowed)
        return [[self._hit(rank, int(r), float(s)) for rank, (r, s) in enumerate(zip(rr, ss), 1) if r >= 0]
                for rr, ss in zip(rows, scores)]

    def search(self, query, k: int = 10, modality: str | None = None, image=None) -> list[Hit]:
        """Search with a text, an image (PIL image, or a path to an image file), or both
        (``search("red shoes", image=photo)``)."""
        text = None
        if isinstance(query, Path) or (isinstance(query, str) and looks_like_image(query)):
            image, query = query, None
        elif query is not None and not isinstance(query, str):
            image, query = query, None  # a PIL image
        text = query
        if text is None and image is None:
            raise InputError("empty query")
        vectors = self.encode_queries([text] if text is not None else None, [image] if image is not None else None)
        return self.search_vectors(vectors, k, modality)[0]

    def _hit(self, rank: int, row: int, score: float) -> Hit:
        d = self.documents
        return Hit(rank, d["id"][row], score, d["modality"][row], d["text"][row], d["image"][row], d["audio"][row], d["video"][row])

    def raw(self) -> dict[str, np.ndarray]:
        return {p.stem: np.load(p, mmap_mode="r") for p in sorted((self.folder / "raw").glob("*.npy"))}

    def recalibrate(self, calibration: Calibrator | str | Path | None, alpha: float | None = None) -> "MixIndex":
        """Apply another calibration or alpha from the stored raw embeddings, without re-encoding."""
        alpha = self.manifest["calibration"]["alpha"] if alpha is None else alpha
        docs = [Document(id=i, **{m: self.documents[m][r] for m in MODALITIES}) for r, i in enumerate(self.ids)]
        raw = self.raw()
        cal, source = _calibrator_for(calibration, self.model, raw, docs, alpha, BuildReport())
        # write everything new beside the old files, then swap: a failure changes nothing
        new_cal, new_vectors = self.folder / "calibration.new.safetensors", self.folder / "vectors.new.npy"
        try:
            _write_vectors(new_vectors, cal, raw, docs, self.model["dim"])
            save_calibration(cal, new_cal, cal.provenance)
        except BaseException:
            new_vectors.unlink(missing_ok=True)
            new_cal.unlink(missing_ok=True)
            raise
        manifest = {**self.manifest, "calibration": _calibration_record(cal, source)}
        self.index = None  # release the memory map before its file is replaced
        new_vectors.replace(self.folder / "vectors.npy")
        new_cal.replace(self.folder / "calibration.safetensors")
        (self.folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return MixIndex(self.folder, encoder=self._encoder, device=self.device)


def open_index(folder: str | Path, encoder: Encoder | str | None = None, device: str | None = None) -> MixIndex:
    if isinstance(encoder, str):
        encoder = load_encoder(encoder, device=device)
    return MixIndex(folder, encoder=encoder, device=device)

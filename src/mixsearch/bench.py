"""Bench: benchmark datasets, the GR-CLIP paper's three settings, run through the search engine.

Everything that ranks goes through ``build_index`` / ``MixIndex.recalibrate`` /
``MixIndex.calibrate_queries`` / ``MixIndex.search_vectors``: this module builds corpora and
query sets, hands them to the engine, and turns its hit lists into runs for ``evaluate``.
``report.py`` writes what ``run_benchmark`` returns.

Datasets (``load_benchmark``):
- ``mixbench``: the Hugging Face layout of ``mixed-modality-search/MixBench25`` (configs MSCOCO,
  Google_WIT, VisualNews, OVEN; splits ``query``, ``corpus``, ``qrel`` and, where present,
  ``mixed_corpus``; fields ``query_id``, ``corpus_id``, ``text``, ``image`` (a path under the images
  folder), ``score``), read with ``datasets`` from a hub id (downloaded with ``snapshot_download``,
  so the dataset revision is the snapshot's commit) or a local copy of the repository.
- ``beir``: a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).
- ``captions``: image + several captions per line (``{"image": ..., "captions": [...]}``). Rule,
  seeded: for each image one caption, picked by ``sha256(f"{seed}:query:{image}")``, is the query;
  the other captions, in file order, joined by a space, are the document text; the document is
  the image with that text, and it is the query's one relevant document.

Seeded choices all hash ``(seed, purpose, id)`` (``_unit``), so they do not depend on file order,
on which other items are present, or on Python's hash seed:
- setting 1: document ``d`` is replaced when ``_unit(seed, "replace", d) < p``; the replaced sets
  are nested as p grows, so the curve moves smoothly;
- setting 3 (a corpus of paired documents): documents sorted by ``_unit(seed, "mix", d)``, the first
  third become text-only, the second image-only, the rest image+text (1:1:1);
- ``max_queries``: the queries with the smallest ``_unit(seed, "query", q)``;
- calibration items beyond ``max_calibration``: those with the smallest ``_unit(seed, "calibration", x)``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import __version__
from .cache import EmbeddingCache
from .calibrate import Calibrator
from .calibration_file import load_calibration, save_calibration
from .encode import Encoder, cache_root, embed, load_encoder
from .evaluate import DEFAULT_METRICS, evaluate_all, restrict_qrels, run_from_ranking
from .ingest import Document, InputError, Problem, document_from_record
from .render import RenderSettings, render_to_file
from .search import MixIndex, build_index, fit_calibration

KINDS = ("mixbench", "beir", "captions")
MIXBENCH_SUBSETS = ("MSCOCO", "Google_WIT", "VisualNews", "OVEN")
DEFAULT_GRID = tuple(round(i / 10, 1) for i in range(11))


class BenchError(InputError):
    """A benchmark that cannot be run as asked (missing data, a model without an image tower...)."""


# -- datasets ---------------------------------------------------------------------------------


@dataclass
class Query:
    id: str
    text: str | None = None
    image: Path | None = None

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(m for m in ("text", "image") if getattr(self, m) is not None)


@dataclass
class Benchmark:
    """Queries, documents and qrels. ``corpus`` holds the documents with every part they have
    (settings 1 and 2 take their text and image views); ``mixed``, where the dataset ships one, is
    the mixed corpus setting 3 evaluates as given."""

    name: str
    kind: str
    queries: list[Query]
    corpus: list[Document]
    qrels: dict[str, dict[str, int]]
    mixed: list[Document] | None = None
    source: dict = field(default_factory=dict)

    def counts(self) -> dict:
        def by_modality(docs):
            out: dict[str, int] = {}
            for d in docs:
                out[d.modality] = out.get(d.modality, 0) + 1
            return out

        out = {"queries": len(self.queries), "judged_queries": len(self.qrels), "corpus": len(self.corpus),
               "corpus_modalities": by_modality(self.corpus), "qrels_pairs": sum(len(v) for v in self.qrels.values())}
        if self.mixed is not None:
            out["mixed_corpus"] = len(self.mixed)
            out["mixed_modalities"] = by_modality(self.mixed)
        return out


def _unit(seed: int, purpose: str, key: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, purpose, key)."""
    digest = hashlib.sha256(f"{seed}:{purpose}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _first_by_hash(items: Sequence, n: int | None, seed: int, purpose: str, key=str) -> list:
    if n is None or n >= len(items):
        return list(items)
    return sorted(items, key=lambda x: _unit(seed, purpose, key(x)))[:n]


def detect_kind(path: str | Path) -> str:
    p = Path(path)
    if p.is_dir() and (p / "corpus.jsonl").is_file() and (p / "qrels").is_dir():
        return "beir"
    if p.is_file() and p.suffix == ".jsonl" or (p.is_dir() and any(p.glob("*.jsonl")) and not (p / "README.md").is_file()):
        return "captions"
    return "mixbench"


def load_beir(folder: str | Path, split: str = "test") -> Benchmark:
    folder = Path(folder)
    for need in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / need).is_file():
            raise BenchError(f"{folder}: not a BEIR folder (no {need})")
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / f"{split}.tsv").open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            cols = line.rstrip("\n").split("\t")
            if number == 1 and not cols[-1].lstrip("-").isdigit():
                continue  # header
            if len(cols) < 3:
                raise BenchError(f"{folder}/qrels/{split}.tsv:{number}: expected query-id, corpus-id, score")
            qrels.setdefault(cols[0], {})[cols[1]] = int(cols[2])
    queries = []
    with (folder / "queries.jsonl").open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                record = json.loads(line)
                qid = str(record.get("_id", record.get("id")))
                if qid in qrels:
                    queries.append(Query(qid, text=record["text"]))
    corpus = []
    with (folder / "corpus.jsonl").open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                corpus.append(document_from_record(json.loads(line), folder, f"{folder}/corpus.jsonl:{number}"))
    return Benchmark(folder.name, "beir", queries, corpus, qrels,
                     source={"kind": "beir", "path": str(folder), "split": split, "revision": _local_revision(folder, [
                         folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / f"{split}.tsv"]),
                         "rule": "BEIR: title and text joined by a space (as MTEB); queries are those of the split's qrels"})


def load_captions(path: str | Path, split: str | None = None, seed: int = 0) -> Benchmark:
    """Image + captions lines -> one query per image (a seeded caption), the other captions as the
    document text (see the module doc)."""
    path = Path(path)
    file = path if path.is_file() else path / (split or "dev.jsonl")
    if not file.is_file():
        raise BenchError(f"{file}: no such captions file")
    queries, corpus, qrels = [], [], {}
    with file.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            captions = [c for c in record.get("captions", []) if isinstance(c, str) and c.strip()]
            if "image" not in record or len(captions) < 2:
                raise BenchError(f"{file}:{number}: expected an 'image' and at least 2 'captions'")
            image = record["image"]
            doc_id = Path(image).stem
            pick = int(_unit(seed, "query", image) * len(captions))
            rest = [c.strip() for i, c in enumerate(captions) if i != pick]
            queries.append(Query(f"q-{doc_id}", text=captions[pick].strip()))
            corpus.append(Document(id=doc_id, text=" ".join(rest), image=file.parent / image, where=f"{file}:{number}"))
            qrels[f"q-{doc_id}"] = {doc_id: 1}
    name = file.parent.name + ("" if file.stem == "dev" else f"-{file.stem}")
    return Benchmark(name, "captions", queries, corpus, qrels,
                     source={"kind": "captions", "path": str(file), "seed": seed, "revision": _local_revision(file.parent, [file]),
                             "rule": "query = caption picked by sha256(seed:query:image); document = the image + the "
                                     "other captions joined by a space; qrel: the query's own image document"})


def _local_revision(folder: Path, files: Sequence[Path]) -> str:
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and (folder / ".git").exists():
            return "git:" + out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    h = hashlib.sha256()
    for p in files:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()[:16]


def _mixbench_root(source: str, subsets: Sequence[str], revision: str | None) -> tuple[Path, str]:
    p = Path(source).expanduser()
    if p.is_dir():
        files = sorted(f for s in subsets for f in (p / s).rglob("*") if f.is_file() and f.suffix in (".jsonl", ".json", ".parquet", ".tsv", ".csv"))
        return p, _local_revision(p, files + ([p / "README.md"] if (p / "README.md").is_file() else []))
    from huggingface_hub import snapshot_download

    try:
        root = snapshot_download(source, repo_type="dataset", revision=revision,
                                 allow_patterns=["README.md", "*.py", *[f"{s}/**" for s in subsets]])
    except Exception as err:  # noqa: BLE001 - hub errors are many; all mean "cannot get it"
        raise BenchError(f"cannot get dataset {source!r} (revision {revision or 'main'}): {err}") from None
    return Path(root), f"hf:{source}@{Path(root).name}"


def _load_split(root: Path, subset: str, split: str):
    """One split of one MixBench config, through ``datasets``: the repository's README configs
    first, else the files named ``<subset>/<split>*`` (jsonl, json, parquet, csv, tsv)."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        return datasets.load_dataset(str(root), subset, split=split)
    except Exception:  # noqa: BLE001 - no README configs, a loading script, or no such split
        pass
    names = {"query": ("query", "queries"), "qrel": ("qrel", "qrels"), "corpus": ("corpus",),
             "mixed_corpus": ("mixed_corpus",)}.get(split, (split,))
    for suffix, builder, extra in ((".jsonl", "json", {}), (".json", "json", {}), (".parquet", "parquet", {}),
                                   (".tsv", "csv", {"delimiter": "\t"}), (".csv", "csv", {})):
        files = sorted({str(f) for n in names for pattern in (f"{n}{suffix}", f"{n}-*{suffix}", f"{n}/*{suffix}")
                        for f in (root / subset).glob(pattern)})
        if files:
            return datasets.load_dataset(builder, data_files={"data": files}, split="data", **extra)
    return None


def _resolve_image(root: Path, subset: str, value) -> Path | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dict):
        value = value.get("path")
        if not value:
            raise BenchError(f"MixBench {subset}: images stored as bytes are not supported; give paths")
    value = str(value)
    for base in (root / subset / "images", root / "images", root / subset, root):
        if (base / value).is_file():
            return base / value
    return root / subset / "images" / value  # missing: the engine reports it and skips the document


def load_mixbench(source: str | Path, subset: str, revision: str | None = None) -> Benchmark:
    root, rev = _mixbench_root(str(source), [subset], revision)
    split_rows = {s: _load_split(root, subset, s) for s in ("query", "corpus", "qrel", "mixed_corpus")}
    for s in ("query", "corpus", "qrel"):
        if split_rows[s] is None:
            raise BenchError(f"{root}: MixBench config {subset!r} has no {s!r} split")

    def text_of(row):
        t = row.get("text")
        return t.strip() if isinstance(t, str) and t.strip() else None

    queries = [Query(str(r["query_id"]), text_of(r), _resolve_image(root, subset, r.get("image"))) for r in split_rows["query"]]

    def docs(rows):
        out = []
        for n, r in enumerate(rows, 1):
            text, image = text_of(r), _resolve_image(root, subset, r.get("image"))
            if text is None and image is None:
                continue
            out.append(Document(id=str(r["corpus_id"]), text=text, image=image, where=f"{subset}/corpus row {n}"))
        return out

    qrels: dict[str, dict[str, int]] = {}
    for r in split_rows["qrel"]:
        qrels.setdefault(str(r["query_id"]), {})[str(r["corpus_id"])] = int(r.get("score", 1) or 0)
    mixed = docs(split_rows["mixed_corpus"]) if split_rows["mixed_corpus"] is not None else None
    return Benchmark(subset, "mixbench", queries, docs(split_rows["corpus"]), qrels, mixed,
                     source={"kind": "mixbench", "path": str(source), "subset": subset, "revision": rev,
                             "rule": "MixBench as shipped; images resolved under <subset>/images, images, <subset>, then the root"})


def load_benchmark(path: str | Path, kind: str = "auto", subset: str | None = None, split: str | None = None,
                   revision: str | None = None, seed: int = 0) -> Benchmark:
    kind = detect_kind(path) if kind == "auto" else kind
    if kind == "beir":
        return load_beir(path, split or "test")
    if kind == "captions":
        return load_captions(path, split, seed)
    if kind == "mixbench":
        if not subset:
            raise BenchError("MixBench needs a subset (--subset MSCOCO, Google_WIT, VisualNews or OVEN)")
        return load_mixbench(path, subset, revision)
    raise BenchError(f"unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}")


# -- calibration sources ----------------------------------------------------------------------


@dataclass
class CalibrationPlan:
    """Where the GR means come from: files (one per model), a benchmark (another split, other
    subsets), or — only when asked by name — the test data itself (transductive)."""

    kind: str  # "file" | "benchmark" | "test"
    description: str
    files: list[Path] = field(default_factory=list)
    benchmarks: list[Benchmark] = field(default_factory=list)


def plan_calibration(spec: str, path: str | Path, kind: str, test: Benchmark, split: str | None,
                     subsets: Sequence[str], files: Sequence[Path] = (), revision: str | None = None,
                     seed: int = 0) -> CalibrationPlan:
    """Resolve ``--calibration FILE`` / ``--calibrate-on SPEC``.

    SPEC: ``auto`` (BEIR: the ``train`` qrels split; captions: ``train.jsonl`` beside the test file;
    MixBench: unified means pooled over the *other* subsets of this run, leave-one-out), ``split:NAME``
    (another split of the same dataset), ``subsets:A,B`` (MixBench: pooled over those configs),
    ``test`` (the test data itself: transductive, labelled as such in every report).
    """
    if files:
        return CalibrationPlan("file", "calibration file(s): " + ", ".join(map(str, files)), files=list(files))
    kind = detect_kind(path) if kind == "auto" else kind
    if spec == "test":
        return CalibrationPlan("test", f"TRANSDUCTIVE: means fitted on the test data of {test.name} itself", benchmarks=[test])
    if spec == "auto":
        if kind == "beir":
            if (Path(path) / "qrels" / "train.tsv").is_file() and (split or "test") != "train":
                spec = "split:train"
            else:
                raise BenchError(f"{path}: no train qrels to calibrate on; give --calibrate-on or --calibration")
        elif kind == "captions":
            p = Path(path)
            folder = p.parent if p.is_file() else p
            test_file = p.name if p.is_file() else (split or "dev.jsonl")
            if (folder / "train.jsonl").is_file() and test_file != "train.jsonl":
                spec = "split:train.jsonl"
            else:
                raise BenchError(f"{folder}: no train.jsonl to calibrate on; give --calibrate-on or --calibration")
        else:
            others = [s for s in subsets if s != test.name]
            if not others:
                raise BenchError("MixBench has no training split: calibrate on other subsets "
                                 "(--calibrate-on subsets:A,B, or run several --subset for leave-one-out unified means), "
                                 "on a calibration file (--calibration), or explicitly on the test data (--calibrate-on test)")
            spec = "subsets:" + ",".join(others)
    if spec.startswith("split:"):
        name = spec[len("split:"):]
        p = Path(path)
        target = (p.parent if p.is_file() else p) if kind == "captions" else p
        bench = load_benchmark(target, kind, subset=test.name if kind == "mixbench" else None, split=name, revision=revision, seed=seed)
        if kind == "captions" and Path(bench.source["path"]).resolve() == Path(test.source["path"]).resolve():
            raise BenchError(f"--calibrate-on {spec}: that is the test split; say --calibrate-on test to calibrate transductively")
        return CalibrationPlan("benchmark", f"dataset-specific means: {test.name} split {name!r}", benchmarks=[bench])
    if spec.startswith("subsets:"):
        names = [s for s in spec[len("subsets:"):].split(",") if s]
        if test.name in names:
            raise BenchError(f"--calibrate-on {spec} includes the test subset {test.name}; say --calibrate-on test to calibrate transductively")
        benches = [load_mixbench(path, s, revision) for s in names]
        return CalibrationPlan("benchmark", "unified means pooled over MixBench subsets " + ", ".join(names), benchmarks=benches)
    raise BenchError(f"unknown --calibrate-on {spec!r}; use auto, split:NAME, subsets:A,B or test")


def calibration_items(benches: Sequence[Benchmark], max_items: int | None, seed: int) -> dict[str, list]:
    """Query texts, document texts and document images of calibration benchmarks, each capped at
    ``max_items`` (seeded). Only labels-free parts are used: no qrels."""
    queries = [q.text for b in benches for q in b.queries if q.text]
    texts = [d.text for b in benches for d in (b.corpus + (b.mixed or [])) if d.text]
    images = [str(d.image) for b in benches for d in (b.corpus + (b.mixed or [])) if d.image is not None]
    pick = lambda xs, what: _first_by_hash(list(dict.fromkeys(xs)), max_items, seed, f"calibration-{what}")  # noqa: E731
    return {"queries": pick(queries, "query"), "texts": pick(texts, "text"), "images": pick(images, "image")}


# -- running ------------------------------------------------------------------------------------


@dataclass
class BenchConfig:
    settings: tuple[int, ...] = (3,)
    p_grid: tuple[float, ...] = DEFAULT_GRID
    alpha_grid: tuple[float, ...] = DEFAULT_GRID
    replace: str = "image"  # setting 1: "image" or "screenshot"
    alpha: float = 0.5  # image+text weight in settings 1 and 3
    depth: int = 100  # hits retrieved per query
    metrics: tuple[str, ...] = DEFAULT_METRICS
    seed: int = 0
    max_queries: int | None = None
    max_calibration: int | None = 5000
    case_queries: tuple[str, ...] = ()
    n_cases: int = 5
    render: RenderSettings = field(default_factory=RenderSettings)
    device: str | None = None
    batch_size: int | None = None
    cache_dir: Path | None = None
    progress: bool = True

    def record(self) -> dict:
        out = asdict(self)
        out["render"] = self.render.describe()
        out["cache_dir"] = str(self.cache_dir or cache_root())
        return out


def _quiet(_: str) -> None:
    pass


class _Engine:
    """One model's queries against corpora built per setting, all through the engine."""

    def __init__(self, encoder: Encoder, bench: Benchmark, cfg: BenchConfig, work: Path, log: Callable[[str], None]):
        self.encoder, self.bench, self.cfg, self.work, self.log = encoder, bench, cfg, work, log
        self.problems: list[str] = []
        self.queries = _first_by_hash(bench.queries, cfg.max_queries, cfg.seed, "query", key=lambda q: q.id)
        self.query_by_id = {q.id: q for q in self.queries}
        missing = sorted({m for q in self.queries for m in q.parts} - encoder.modalities)
        if missing:
            raise BenchError(f"model {encoder.name!r} cannot encode the queries' {', '.join(missing)}")
        cache = EmbeddingCache(cfg.cache_dir or cache_root(), encoder.fingerprint, encoder.dim)
        self.raw: dict[tuple[str, ...], tuple[list[str], dict[str, np.ndarray]]] = {}
        groups: dict[tuple[str, ...], list[Query]] = {}
        for q in self.queries:
            groups.setdefault(q.parts, []).append(q)
        for parts, qs in groups.items():
            ok = np.ones(len(qs), dtype=bool)
            arrays = {}
            for m in parts:
                items = [getattr(q, m) if m == "text" else str(getattr(q, m)) for q in qs]
                out = embed(encoder, items, m, cache=cache, progress=cfg.progress,
                            report=lambda p: self.problems.append(f"query: {p}"))
                arrays[m], ok = out.vectors, ok & out.ok
            self.raw[parts] = ([q.id for q, good in zip(qs, ok) if good], {m: a[ok] for m, a in arrays.items()})
        cache.close()

    def index(self, docs: list[Document], name: str) -> MixIndex:
        idx, report = build_index(docs, self.work / name, self.encoder, calibration="none", alpha=self.cfg.alpha,
                                  cache_dir=self.cfg.cache_dir, progress=self.cfg.progress, log=_quiet)
        self.problems += [f"{name}: {p}" for p in report.problems]
        return idx

    def rank(self, idx: MixIndex, cal: Calibrator, alpha: float, pushdown: bool = False):
        """Apply ``cal`` at ``alpha`` and search: ``{query: [Hit, ...]}`` (``pushdown``: every
        text hit before every image hit, each part in the engine's order)."""
        idx = idx.recalibrate(copy.deepcopy(cal), alpha)
        depth = self.cfg.depth
        out = {}
        for ids, parts in self.raw.values():
            if not ids:
                continue
            Q = idx.calibrate_queries(parts)
            if pushdown:
                text = idx.search_vectors(Q, depth, modality="text")
                image = idx.search_vectors(Q, depth, modality="image")
                hits = [(t + i)[:depth] for t, i in zip(text, image)]
            else:
                hits = idx.search_vectors(Q, depth)
            out.update(zip(ids, hits))
        return idx, out

    def score(self, hits: dict, qrels: dict, per_query: bool = False) -> dict:
        run = run_from_ranking({q: [h.id for h in hs] for q, hs in hits.items()})
        return evaluate_all(qrels, run, self.cfg.metrics, per_query=per_query)

    def qrels_for(self, idx: MixIndex) -> dict:
        """The qrels of this run's queries, limited to the documents the index holds."""
        return restrict_qrels(self.bench.qrels, idx.ids, self.query_by_id)


def _corpus_counts(docs: Sequence[Document]) -> dict:
    out: dict[str, int] = {}
    for d in docs:
        out[d.modality] = out.get(d.modality, 0) + 1
    return out


def mixed_corpus(bench: Benchmark, seed: int) -> tuple[list[Document], str]:
    """The corpus setting 3 evaluates, and how it was made."""
    if bench.mixed is not None:
        return bench.mixed, "the dataset's own mixed corpus"
    paired = [d for d in bench.corpus if d.text is not None and d.image is not None]
    if paired and len(paired) == len(bench.corpus):
        order = sorted(paired, key=lambda d: _unit(seed, "mix", d.id))
        n = len(order)
        docs = [Document(id=d.id, text=d.text, where=d.where) for d in order[: n // 3]]
        docs += [Document(id=d.id, image=d.image, where=d.where) for d in order[n // 3 : 2 * n // 3]]
        docs += [d for d in order[2 * n // 3 :]]
        return docs, f"seeded 1:1:1 text / image / image+text mix of the paired corpus (seed {seed})"
    return bench.corpus, "the corpus as given"


def _nearest(grid: Sequence[float], value: float) -> float:
    return min(grid, key=lambda x: (abs(x - value), x))


def _case_hits(hits: list, qrels: dict, n: int = 5) -> list[dict]:
    return [{"rank": h.rank, "id": h.id, "score": round(h.score, 5), "modality": h.modality,
             "text": (h.text or "")[:400] or None, "image": h.image, "relevance": int(qrels.get(h.id, 0))}
            for h in hits[:n]]


def _pick_cases(cfg: BenchConfig, plain: dict, cal: dict, qrels: dict) -> list[str]:
    if cfg.case_queries:
        return [q for q in cfg.case_queries if q in plain]
    judged = sorted((q for q in qrels if q in plain), key=lambda q: _unit(cfg.seed, "case", q))
    differ = [q for q in judged if [h.id for h in plain[q][:1]] != [h.id for h in cal.get(q, [])[:1]]]
    return (differ + [q for q in judged if q not in differ])[: cfg.n_cases]


def _cases(engine: _Engine, label: str, plain: dict, cal: dict, qrels: dict) -> dict:
    chosen = _pick_cases(engine.cfg, plain, cal, qrels)
    queries = []
    for q in chosen:
        query = engine.query_by_id[q]
        queries.append({"id": q, "text": query.text, "image": str(query.image) if query.image else None,
                        "relevant": {d: r for d, r in qrels.get(q, {}).items() if r > 0},
                        "plain": _case_hits(plain[q], qrels.get(q, {})), "calibrated": _case_hits(cal.get(q, []), qrels.get(q, {}))})
    return {"label": label, "queries": queries}


def run_benchmark(bench: Benchmark, models: Sequence[str | Encoder], plan: CalibrationPlan, cfg: BenchConfig,
                  work_dir: str | Path, log: Callable[[str], None] = print, save_dir: str | Path | None = None) -> dict:
    """Run the asked settings for every model on one benchmark; returns all numbers and the
    configuration (``report.write_report`` turns it into JSON, Markdown, plots and HTML).
    With ``save_dir``, each fitted calibration is saved there for reuse with ``index --calibration``."""
    started = time.perf_counter()
    work = Path(work_dir)
    out: dict = {"dataset": {"name": bench.name, **bench.source, "counts": bench.counts()},
                 "calibration": {"plan": plan.kind, "description": plan.description}, "models": {},
                 "rows": [], "cases": [], "timings": {}, "problems": []}
    if plan.kind == "file" and len(plan.files) not in (1, len(models)):
        raise BenchError(f"{len(plan.files)} calibration files for {len(models)} models: give one per model, in order")
    for mi, model in enumerate(models):
        t0 = time.perf_counter()
        encoder = model if isinstance(model, Encoder) else load_encoder(model, device=cfg.device, batch_size=cfg.batch_size)
        name = model if isinstance(model, str) else encoder.name  # as the user named it
        log(f"[{bench.name}] model {name} ({encoder.name})")
        if "image" not in encoder.modalities and any(s in (1, 2) for s in cfg.settings):
            raise BenchError(f"settings 1 and 2 need an image-text model; {name!r} encodes only "
                             f"{', '.join(sorted(encoder.modalities))} (run --settings 3 for a text-only corpus)")
        cal, cal_record, cal_screens = _calibrator(encoder, plan, mi, cfg, bench, work, log)
        if save_dir is not None and cal.method != "none":
            path = Path(save_dir) / f"{_slug(name)}--{_slug(bench.name)}.safetensors"
            cal_record["file"] = str(save_calibration(cal, path, cal.provenance))
        engine = _Engine(encoder, bench, cfg, work / "indexes" / _slug(name), log)
        out["models"][name] = {"info": encoder.info(), "calibration": cal_record, "queries": len(engine.queries)}
        for setting in cfg.settings:
            ts = time.perf_counter()
            log(f"[{bench.name}] {name}: setting {setting}")
            rows, cases = {1: _setting1, 2: _setting2, 3: _setting3}[setting](
                engine, cal if setting != 1 or cal_screens is None else cal_screens)
            for r in rows:
                r.update(dataset=bench.name, model=name, setting=setting)
            out["rows"] += rows
            if cases:
                out["cases"].append({"dataset": bench.name, "model": name, "setting": setting, **cases})
            out["timings"][f"{name} setting {setting}"] = round(time.perf_counter() - ts, 1)
        out["problems"] += engine.problems[:200]
        out["timings"][f"{name} total"] = round(time.perf_counter() - t0, 1)
    out["timings"]["total"] = round(time.perf_counter() - started, 1)
    return out


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name).strip("/"))[-80:]


def _calibrator(encoder: Encoder, plan: CalibrationPlan, model_index: int, cfg: BenchConfig, bench: Benchmark,
                work: Path, log) -> tuple[Calibrator, dict, Calibrator | None]:
    """The GR calibrator for this model, its record, and (screenshot setting 1) a copy whose image
    mean is fitted on screenshots of the calibration texts instead of photos."""
    if plan.kind == "file":
        path = plan.files[model_index if len(plan.files) > 1 else 0]
        cal = load_calibration(path)
        cal.check_model(encoder.fingerprint, encoder.name)
        record = {"source": f"file {path}", "provenance": cal.provenance, "counts": cal.counts_, "fitted_for": cal.fitted_for}
        if 1 in cfg.settings and cfg.replace == "screenshot" and "image" not in cal.counts_:
            raise BenchError(f"{path}: no image mean, which screenshots need")
        return cal, record, None
    items = calibration_items(plan.benchmarks, cfg.max_calibration, cfg.seed)
    roles = {"queries": items["queries"] or None, "texts": items["texts"] or None}
    if "image" in encoder.modalities and items["images"]:
        roles["images"] = items["images"]
    log(f"fitting calibration means ({plan.description}): " + ", ".join(f"{k} {len(v)}" for k, v in roles.items() if v))
    problems: list[Problem] = []
    cal = fit_calibration(encoder, **roles, cache_dir=cfg.cache_dir, progress=cfg.progress, report=problems.append)
    cal.provenance = {"plan": plan.kind, "description": plan.description,
                      "datasets": [b.source for b in plan.benchmarks], "items": {k: len(v) for k, v in roles.items() if v},
                      "max_calibration": cfg.max_calibration, "seed": cfg.seed}
    record = {"source": plan.description, "transductive": plan.kind == "test", "provenance": cal.provenance,
              "counts": cal.counts_, "skipped_items": len(problems)}
    screens = None
    if 1 in cfg.settings and cfg.replace == "screenshot" and "image" in encoder.modalities:
        texts = items["texts"]
        log(f"rendering {len(texts)} calibration screenshots")
        paths = [str(render_to_file(t, _screens_dir(cfg), cfg.render)) for t in _bar(texts, "rendering", cfg.progress)]
        shot = fit_calibration(encoder, images=paths, cache_dir=cfg.cache_dir, progress=cfg.progress)
        screens = copy.deepcopy(cal)
        screens.set_mean("image", shot.means_["image"], shot.counts_["image"])
        screens.provenance = {**cal.provenance, "image_mean": f"screenshots of {len(paths)} calibration texts"}
        record["screenshot_image_mean"] = f"setting 1 uses an image mean fitted on screenshots of {len(paths)} calibration texts"
    return cal, record, screens


def _screens_dir(cfg: BenchConfig) -> Path:
    return Path(cfg.cache_dir or cache_root()) / "screenshots"


def _bar(items, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="item", disable=not enabled, leave=False)


def _plain(alpha: float) -> Calibrator:
    return Calibrator("none", alpha)


def _metric_rows(engine: _Engine, hits: dict, qrels: dict, **fields) -> dict:
    return {**fields, "queries": len(qrels), "metrics": engine.score(hits, qrels)}


def _setting1(engine: _Engine, cal: Calibrator):
    """Text documents replaced by their image (or screenshot) with probability p."""
    cfg, bench = engine.cfg, engine.bench
    if cfg.replace not in ("image", "screenshot"):
        raise BenchError(f"--replace must be image or screenshot, not {cfg.replace!r}")
    pool = [d for d in bench.corpus if d.text is not None and (cfg.replace == "screenshot" or d.image is not None)]
    if not pool:
        raise BenchError(f"{bench.name}: no documents with text{' and an image' if cfg.replace == 'image' else ''} for setting 1")
    if cfg.replace == "screenshot":
        engine.log(f"rendering {len(pool)} screenshots")
        swap = {d.id: render_to_file(d.text, _screens_dir(cfg), cfg.render) for d in _bar(pool, "rendering", cfg.progress)}
    else:
        swap = {d.id: d.image for d in pool}
    u = {d.id: _unit(cfg.seed, "replace", d.id) for d in pool}
    rows, case = [], None
    case_p = _nearest(cfg.p_grid, 0.5)
    for p in cfg.p_grid:
        docs = [Document(id=d.id, image=swap[d.id], where=d.where) if u[d.id] < p else Document(id=d.id, text=d.text, where=d.where)
                for d in pool]
        idx = engine.index(docs, "setting1")
        qrels = engine.qrels_for(idx)
        counts = _corpus_counts(docs)
        results = {}
        for variant, c in (("plain", _plain(cfg.alpha)), ("calibrated", cal)):
            idx, hits = engine.rank(idx, c, cfg.alpha)
            results[variant] = hits
            rows.append(_metric_rows(engine, hits, qrels, variant=variant, p=p, corpus=counts, replace=cfg.replace))
            idx, pushed = engine.rank(idx, c, cfg.alpha, pushdown=True)
            rows.append(_metric_rows(engine, pushed, qrels, variant=f"{variant}+pushdown", p=p, corpus=counts, replace=cfg.replace))
        if p == case_p:
            case = _cases(engine, f"setting 1, p = {p} ({cfg.replace})", results["plain"], results["calibrated"], qrels)
    return rows, case


def _setting2(engine: _Engine, cal: Calibrator):
    """Every document image+text; sweep the text weight alpha."""
    cfg, bench = engine.cfg, engine.bench
    pool = [d for d in bench.corpus if d.text is not None and d.image is not None]
    if not pool:
        raise BenchError(f"{bench.name}: no image+text documents for setting 2")
    docs = [Document(id=d.id, text=d.text, image=d.image, where=d.where) for d in pool]
    idx = engine.index(docs, "setting2")
    qrels = engine.qrels_for(idx)
    rows, case = [], None
    case_alpha = _nearest(cfg.alpha_grid, cfg.alpha)
    for alpha in cfg.alpha_grid:
        results = {}
        for variant, c in (("plain", _plain(alpha)), ("calibrated", cal)):
            idx, hits = engine.rank(idx, c, alpha)
            results[variant] = hits
            rows.append(_metric_rows(engine, hits, qrels, variant=variant, alpha=alpha, corpus=_corpus_counts(docs)))
        if alpha == case_alpha:
            case = _cases(engine, f"setting 2, alpha = {alpha}", results["plain"], results["calibrated"], qrels)
    return rows, case


def _setting3(engine: _Engine, cal: Calibrator):
    """The mixed corpus (MixBench table): plain vs calibrated."""
    cfg = engine.cfg
    docs, how = mixed_corpus(engine.bench, cfg.seed)
    idx = engine.index(docs, "setting3")
    kept = set(idx.ids)
    qrels = engine.qrels_for(idx)
    counts = _corpus_counts([d for d in docs if d.id in kept])
    rows, results = [], {}
    for variant, c in (("plain", _plain(cfg.alpha)), ("calibrated", cal)):
        idx, hits = engine.rank(idx, c, cfg.alpha)
        results[variant] = hits
        scored = engine.score(hits, qrels, per_query=True)
        per_query = scored.pop("per_query")
        rows.append({"variant": variant, "alpha": cfg.alpha, "corpus": counts, "corpus_rule": how,
                     "queries": len(qrels), "metrics": scored, "per_query": per_query})
    case = _cases(engine, "setting 3 (mixed corpus)", results["plain"], results["calibrated"], qrels)
    return rows, case


def environment() -> dict:
    """The machine and software a run used."""
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    import os

    return {"mixsearch": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "cpu": cpu, "nproc": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "ram": mem, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def bench(dataset: str | Path, models: Sequence[str | Encoder], out: str | Path, kind: str = "auto",
          subsets: Sequence[str] = (), split: str | None = None, revision: str | None = None,
          calibration_files: Sequence[Path] = (), calibrate_on: str = "auto", config: BenchConfig | None = None,
          command: str = "", keep_work: bool = False, log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """Load the dataset (each subset), plan the calibration, run every setting for every model,
    and write the report into ``out``. Returns ``(result, written paths)``."""
    from .report import write_report

    cfg = config or BenchConfig()
    out = Path(out)
    kind = detect_kind(dataset) if kind == "auto" else kind
    if kind == "mixbench" and not subsets:
        raise BenchError("MixBench needs --subset (MSCOCO, Google_WIT, VisualNews, OVEN; repeat it for several)")
    runs = []
    for subset in (subsets if kind == "mixbench" else [None]):
        bench_ = load_benchmark(dataset, kind, subset=subset, split=split, revision=revision, seed=cfg.seed)
        plan = plan_calibration(calibrate_on, dataset, kind, bench_, split, subsets, calibration_files, revision, cfg.seed)
        log(f"[{bench_.name}] {bench_.counts()}; calibration: {plan.description}")
        runs.append(run_benchmark(bench_, models, plan, cfg, out / "work" / _slug(bench_.name), log,
                                  save_dir=out / "calibrations"))
    config_record = {**cfg.record(), "command": command, "dataset": str(dataset), "kind": kind, "subsets": list(subsets),
                     "split": split, "revision": revision, "calibrate_on": calibrate_on,
                     "calibration_files": [str(p) for p in calibration_files],
                     "models": [m if isinstance(m, str) else m.name for m in models]}
    result = {"config": config_record, "environment": environment(), "runs": runs}
    paths = write_report(result, out)
    if not keep_work:
        import shutil

        shutil.rmtree(out / "work", ignore_errors=True)
    return result, paths

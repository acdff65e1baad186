"""Benchmark datasets: loaders for MixBench, BEIR folders and caption datasets, and the seeded rules.

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

Seeded choices all hash ``(seed, purpose, id)`` (``unit``), so they do not depend on file order,
on which other items are present, or on Python's hash seed:
- setting 1: document ``d`` is replaced when ``unit(seed, "replace", d) < p``; the replaced sets
  are nested as p grows, so the curve moves smoothly;
- setting 3 (a corpus of paired documents): documents sorted by ``unit(seed, "mix", d)``, the first
  third become text-only, the second image-only, the rest image+text (1:1:1);
- ``max_queries``: the queries with the smallest ``unit(seed, "query", q)``;
- calibration items beyond ``max_calibration``: those with the smallest ``unit(seed, "calibration", x)``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BenchError, require
from ..ingest import document_from_record
from ..types import Document

KINDS = ("mixbench", "beir", "captions")
MIXBENCH_SUBSETS = ("MSCOCO", "Google_WIT", "VisualNews", "OVEN")


@dataclass
class Query:
    """A benchmark query: a text, an image, or both."""

    id: str
    text: str | None = None
    image: Path | None = None

    @property
    def parts(self) -> tuple[str, ...]:
        """The modalities this query has."""
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
        """How many queries, judged queries and documents (per modality) the benchmark has."""

        def by_modality(docs):
            out: dict[str, int] = {}
            for d in docs:
                out[d.modality] = out.get(d.modality, 0) + 1
            return out

        out = {
            "queries": len(self.queries),
            "judged_queries": len(self.qrels),
            "corpus": len(self.corpus),
            "corpus_modalities": by_modality(self.corpus),
            "qrels_pairs": sum(len(v) for v in self.qrels.values()),
        }
        if self.mixed is not None:
            out["mixed_corpus"] = len(self.mixed)
            out["mixed_modalities"] = by_modality(self.mixed)
        return out


def unit(seed: int, purpose: str, key: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, purpose, key)."""
    digest = hashlib.sha256(f"{seed}:{purpose}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def first_by_hash(items: Sequence, n: int | None, seed: int, purpose: str, key=str) -> list:
    """The ``n`` items with the smallest ``unit(seed, purpose, key(item))`` (all when ``n`` is None)."""
    if n is None or n >= len(items):
        return list(items)
    return sorted(items, key=lambda x: unit(seed, purpose, key(x)))[:n]


def detect_kind(path: str | Path) -> str:
    """``beir``, ``captions`` or ``mixbench``, from the files at ``path``."""
    p = Path(path)
    if p.is_dir() and (p / "corpus.jsonl").is_file() and (p / "qrels").is_dir():
        return "beir"
    if (
        p.is_file()
        and p.suffix == ".jsonl"
        or (p.is_dir() and any(p.glob("*.jsonl")) and not (p / "README.md").is_file())
    ):
        return "captions"
    return "mixbench"


def load_beir(folder: str | Path, split: str = "test") -> Benchmark:
    """A BEIR folder: its corpus, the queries of the ``split`` qrels, and those qrels."""
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
        for line in f:
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
    return Benchmark(
        folder.name,
        "beir",
        queries,
        corpus,
        qrels,
        source={
            "kind": "beir",
            "path": str(folder),
            "split": split,
            "revision": _local_revision(
                folder, [folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / f"{split}.tsv"]
            ),
            "rule": "BEIR: title and text joined by a space (as MTEB); queries are those of the split's qrels",
        },
    )


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
            pick = int(unit(seed, "query", image) * len(captions))
            rest = [c.strip() for i, c in enumerate(captions) if i != pick]
            queries.append(Query(f"q-{doc_id}", text=captions[pick].strip()))
            corpus.append(Document(id=doc_id, text=" ".join(rest), image=file.parent / image, where=f"{file}:{number}"))
            qrels[f"q-{doc_id}"] = {doc_id: 1}
    name = file.parent.name + ("" if file.stem == "dev" else f"-{file.stem}")
    return Benchmark(
        name,
        "captions",
        queries,
        corpus,
        qrels,
        source={
            "kind": "captions",
            "path": str(file),
            "seed": seed,
            "revision": _local_revision(file.parent, [file]),
            "rule": "query = caption picked by sha256(seed:query:image); document = the image + the "
            "other captions joined by a space; qrel: the query's own image document",
        },
    )


def _local_revision(folder: Path, files: Sequence[Path]) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
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
        files = sorted(
            f
            for s in subsets
            for f in (p / s).rglob("*")
            if f.is_file() and f.suffix in (".jsonl", ".json", ".parquet", ".tsv", ".csv")
        )
        return p, _local_revision(p, files + ([p / "README.md"] if (p / "README.md").is_file() else []))
    from huggingface_hub import snapshot_download

    try:
        root = snapshot_download(
            source,
            repo_type="dataset",
            revision=revision,
            allow_patterns=["README.md", "*.py", *[f"{s}/**" for s in subsets]],
        )
    except Exception as err:  # noqa: BLE001 - hub errors are many; all mean "cannot get it"
        raise BenchError(f"cannot get dataset {source!r} (revision {revision or 'main'}): {err}") from None
    return Path(root), f"hf:{source}@{Path(root).name}"


def _load_split(root: Path, subset: str, split: str):
    """One split of one MixBench config, through ``datasets``: the repository's README configs
    first, else the files named ``<subset>/<split>*`` (jsonl, json, parquet, csv, tsv)."""
    datasets = require("datasets", "bench", "reading MixBench")

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        return datasets.load_dataset(str(root), subset, split=split)
    except Exception:  # noqa: BLE001 - no README configs, a loading script, or no such split
        pass
    names = {
        "query": ("query", "queries"),
        "qrel": ("qrel", "qrels"),
        "corpus": ("corpus",),
        "mixed_corpus": ("mixed_corpus",),
    }.get(split, (split,))
    for suffix, builder, extra in (
        (".jsonl", "json", {}),
        (".json", "json", {}),
        (".parquet", "parquet", {}),
        (".tsv", "csv", {"delimiter": "\t"}),
        (".csv", "csv", {}),
    ):
        files = sorted(
            {
                str(f)
                for n in names
                for pattern in (f"{n}{suffix}", f"{n}-*{suffix}", f"{n}/*{suffix}")
                for f in (root / subset).glob(pattern)
            }
        )
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
    """One MixBench config (``subset``) from a hub id or a local copy of the repository."""
    root, rev = _mixbench_root(str(source), [subset], revision)
    split_rows = {s: _load_split(root, subset, s) for s in ("query", "corpus", "qrel", "mixed_corpus")}
    for s in ("query", "corpus", "qrel"):
        if split_rows[s] is None:
            raise BenchError(f"{root}: MixBench config {subset!r} has no {s!r} split")

    def text_of(row):
        t = row.get("text")
        return t.strip() if isinstance(t, str) and t.strip() else None

    queries = [
        Query(str(r["query_id"]), text_of(r), _resolve_image(root, subset, r.get("image"))) for r in split_rows["query"]
    ]

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
    return Benchmark(
        subset,
        "mixbench",
        queries,
        docs(split_rows["corpus"]),
        qrels,
        mixed,
        source={
            "kind": "mixbench",
            "path": str(source),
            "subset": subset,
            "revision": rev,
            "rule": "MixBench as shipped; images resolved under <subset>/images, images, <subset>, then the root",
        },
    )


def load_benchmark(
    path: str | Path,
    kind: str = "auto",
    subset: str | None = None,
    split: str | None = None,
    revision: str | None = None,
    seed: int = 0,
) -> Benchmark:
    """Load a benchmark of ``kind`` (``auto``: detected) from ``path``."""
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


def mixed_corpus(bench: Benchmark, seed: int) -> tuple[list[Document], str]:
    """The corpus setting 3 evaluates, and how it was made."""
    if bench.mixed is not None:
        return bench.mixed, "the dataset's own mixed corpus"
    paired = [d for d in bench.corpus if d.text is not None and d.image is not None]
    if paired and len(paired) == len(bench.corpus):
        order = sorted(paired, key=lambda d: unit(seed, "mix", d.id))
        n = len(order)
        docs = [Document(id=d.id, text=d.text, where=d.where) for d in order[: n // 3]]
        docs += [Document(id=d.id, image=d.image, where=d.where) for d in order[n // 3 : 2 * n // 3]]
        docs += [d for d in order[2 * n // 3 :]]
        return docs, f"seeded 1:1:1 text / image / image+text mix of the paired corpus (seed {seed})"
    return bench.corpus, "the corpus as given"

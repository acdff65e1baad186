"""Benchmark datasets: loaders for MixBench, BEIR folders and caption datasets, and the seeded rules.

Datasets (``load_benchmark``):
- ``mixbench``: ``mixed-modality-search/MixBench25`` as its repository holds it (subsets MSCOCO,
  Google_WIT, VisualNews, OVEN; per subset ``queries.jsonl``, ``corpus.jsonl``, ``mixed_corpus.jsonl``
  with ``query_id``/``corpus_id``, ``text``, ``image`` (a path under ``<subset>/images/``), and
  ``qrels/qrels.tsv`` with ``query_id corpus_id score``), or MixBench2026's Parquet files (``id``,
  ``text``, ``image`` with embedded bytes; no qrels: MixBench25's judge it, ``qrels=``). Read
  directly (no ``datasets`` loading script), every id as the string written; a git-lfs pointer in
  place of an image and a benchmark with no judged query are errors. From a hub id (downloaded with
  ``snapshot_download``, so the revision is the snapshot's commit) or a local copy.
- ``beir``: a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).
- ``captions``: an image (or an ``audio`` clip, or a ``video``) + several captions per line
  (``{"image": ..., "captions": [...]}``: Flickr8k, Clotho, MSR-VTT style). Rule, seeded: for each
  item one caption, picked by ``sha256(f"{seed}:query:{image}")``, is the query;
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
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import cache_root
from ..errors import BenchError, require
from ..ingest import document_from_record
from ..types import Document

KINDS = ("mixbench", "beir", "captions")
#: The media a captions dataset pairs with its captions (one per line): photos, sound clips, videos.
CAPTIONED = ("image", "audio", "video")
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
            media = [m for m in CAPTIONED if isinstance(record.get(m), str) and record[m].strip()]
            if len(media) != 1 or len(captions) < 2:
                raise BenchError(
                    f"{file}:{number}: expected one of 'image', 'audio' or 'video' and at least 2 'captions'"
                )
            kind, value = media[0], record[media[0]]
            doc_id = Path(value).stem
            pick = int(unit(seed, "query", value) * len(captions))
            rest = [c.strip() for i, c in enumerate(captions) if i != pick]
            queries.append(Query(f"q-{doc_id}", text=captions[pick].strip()))
            path = Path(value) if Path(value).is_absolute() else file.parent / value
            corpus.append(Document(id=doc_id, text=" ".join(rest), where=f"{file}:{number}", **{kind: path}))  # type: ignore[arg-type]
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
            "rule": "query = caption picked by sha256(seed:query:<media path>); document = the image (audio, "
            "video) + the other captions joined by a space; qrel: the query's own document",
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


#: MixBench's files per split, by name stem (MixBench25: ``<subset>/queries.jsonl``, ...;
#: MixBench2026: Parquet files or shards named after the split).
SPLIT_STEMS = {"query": ("queries", "query"), "corpus": ("corpus",), "mixed_corpus": ("mixed_corpus",)}
#: The id column of each split, in the order tried.
ID_FIELDS = {
    "query": ("query_id", "id", "_id"),
    "corpus": ("corpus_id", "id", "_id"),
    "mixed_corpus": ("corpus_id", "id", "_id"),
}
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"


def _split_files(folder: Path, split: str) -> list[Path]:
    """The JSON Lines or Parquet files of one split in a subset folder (JSON Lines first)."""
    for suffix in (".jsonl", ".parquet"):
        files = sorted(
            {
                f
                for stem in SPLIT_STEMS[split]
                for pattern in (f"{stem}{suffix}", f"{stem}-*{suffix}", f"{stem}/*{suffix}", f"data/{stem}-*{suffix}")
                for f in folder.glob(pattern)
                if f.is_file()
            }
        )
        if files:
            return files
    return []


def _rows(files: Sequence[Path]) -> list[tuple[str, dict]]:
    """``(where, record)`` of every row of JSON Lines or Parquet files. JSON numbers stay as
    written (an id ``000123`` or ``123`` is never re-typed); Parquet columns keep their types."""
    out: list[tuple[str, dict]] = []
    for f in files:
        if f.suffix == ".parquet":
            pq = require("pyarrow.parquet", "bench", "reading Parquet files")
            for n, record in enumerate(pq.read_table(f).to_pylist(), 1):
                out.append((f"{f}:row {n}", record))
            continue
        with f.open(encoding="utf-8") as lines:
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line, parse_int=str, parse_float=str)
                except json.JSONDecodeError as err:
                    raise BenchError(f"{f}:{n}: not valid JSON ({err.msg})") from None
                if not isinstance(record, dict):
                    raise BenchError(f"{f}:{n}: not a JSON object")
                out.append((f"{f}:{n}", record))
    return out


def _id_of(record: dict, split: str, where: str) -> str:
    for name in ID_FIELDS[split]:
        value = record.get(name)
        if value not in (None, ""):
            return str(value)
    raise BenchError(f"{where}: no id (expected one of {', '.join(ID_FIELDS[split])})")


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """A qrels TSV (``query_id corpus_id score``, with or without a header; ``query-id``/``corpus-id``
    and TREC's four columns too), every id read as the string written."""
    qrels: dict[str, dict[str, int]] = {}
    columns = (0, 1, 2)
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            cols = line.rstrip("\n").split("\t") if "\t" in line else line.split()
            if number == 1 and not cols[-1].strip().lstrip("-").isdigit():
                names = [c.strip().lower().replace("-", "_") for c in cols]
                try:
                    columns = (names.index("query_id"), names.index("corpus_id"), names.index("score"))
                except ValueError:
                    raise BenchError(f"{path}:1: header {line.strip()!r} lacks query_id, corpus_id or score") from None
                continue
            if len(cols) == 4 and columns == (0, 1, 2):
                columns = (0, 2, 3)  # TREC: query Q0 document score
            try:
                q, d, score = (cols[i].strip() for i in columns)
                qrels.setdefault(q, {})[d] = int(score)
            except (IndexError, ValueError):
                raise BenchError(f"{path}:{number}: expected query_id, corpus_id and a whole-number score") from None
    return qrels


def _qrels_file(root: Path, subset: str, qrels: str | Path | None) -> Path | None:
    """The subset's qrels: its own ``qrels/qrels.tsv``, else ``qrels`` (a TSV file, or a copy of
    MixBench25 whose ``<subset>/qrels/qrels.tsv`` judges this subset: MixBench2026 ships none)."""
    candidates = [root / subset / "qrels" / "qrels.tsv", root / subset / "qrels.tsv"]
    if qrels is not None:
        q = Path(qrels).expanduser()
        candidates = (
            [q] if q.is_file() else [q / subset / "qrels" / "qrels.tsv", q / "qrels" / "qrels.tsv"]
        ) + candidates
    return next((c for c in candidates if c.is_file()), None)


def _image_of(root: Path, subset: str, value: object, where: str) -> Path | None:
    """A row's image: a path (resolved under ``<subset>/images``, ``images``, ``<subset>``, the
    root), or embedded bytes (``{"bytes": ...}``, MixBench2026), written once to the cache."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dict):
        data, name = value.get("bytes"), value.get("path")
        if data:
            return _stored_image(bytes(data), name)
        value = name
        if not value:
            return None
    value = str(value)
    for base in (root / subset / "images", root / "images", root / subset, root):
        path = base / value
        if path.is_file():
            _check_not_lfs_pointer(path, root)
            return path
    return root / subset / "images" / value  # missing: the engine reports it and skips the document


def _check_not_lfs_pointer(path: Path, root: Path) -> None:
    if path.stat().st_size < 1024:
        with path.open("rb") as f:
            if f.read(len(LFS_POINTER)) == LFS_POINTER:
                raise BenchError(
                    f"{path} is a git-lfs pointer, not an image: the dataset was cloned without its LFS files; "
                    f"run 'git lfs pull' in {root} (or clone it with git-lfs installed)"
                )


def _stored_image(data: bytes, name: object = None) -> Path:
    """Embedded image bytes as a file under the cache (content-addressed, written once)."""
    digest = hashlib.sha256(data).hexdigest()
    suffix = Path(str(name)).suffix.lower() if name else ""
    if not suffix:
        suffix = ".png" if data[:8] == b"\x89PNG\r\n\x1a\n" else ".jpg" if data[:3] == b"\xff\xd8\xff" else ".img"
    path = cache_root() / "bench-images" / digest[:2] / f"{digest}{suffix}"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def load_mixbench(
    source: str | Path,
    subset: str,
    revision: str | None = None,
    qrels: str | Path | None = None,
    *,
    judged: bool = True,
) -> Benchmark:
    """One MixBench subset from a hub id or a local copy (MixBench25's JSON Lines and image files,
    or MixBench2026's Parquet with embedded images), read directly: every id as the string written.

    ``qrels``: a qrels TSV or a MixBench25 copy, for a copy that ships none (MixBench2026).
    ``judged=False`` (calibration data, which uses no judgements): qrels may be absent."""
    root, rev = _mixbench_root(str(source), [subset], revision)
    folder = root / subset
    if not folder.is_dir():
        raise BenchError(f"{root}: no subset folder {subset!r} (MixBench subsets: {', '.join(MIXBENCH_SUBSETS)})")
    files = {split: _split_files(folder, split) for split in SPLIT_STEMS}
    for split in ("query", "corpus"):
        if not files[split]:
            raise BenchError(f"{folder}: no {SPLIT_STEMS[split][0]}.jsonl or Parquet {split} file")
    qrels_path = _qrels_file(root, subset, qrels)
    if qrels_path is None and judged:
        raise BenchError(
            f"{folder}: no qrels/qrels.tsv. MixBench2026 ships no qrels (MTEB judges it with MixBench25's): "
            "give a MixBench25 copy or a qrels file with --qrels"
        )

    def text_of(record: dict) -> str | None:
        t = record.get("text")
        return t.strip() if isinstance(t, str) and t.strip() else None

    queries = []
    for where, r in _rows(files["query"]):
        queries.append(Query(_id_of(r, "query", where), text_of(r), _image_of(root, subset, r.get("image"), where)))

    def docs(split: str) -> list[Document]:
        out = []
        for where, r in _rows(files[split]):
            text, image = text_of(r), _image_of(root, subset, r.get("image"), where)
            if text is None and image is None:
                continue
            out.append(Document(id=_id_of(r, split, where), text=text, image=image, where=where))
        return out

    corpus = docs("corpus")
    mixed = docs("mixed_corpus") if files["mixed_corpus"] else None
    judgements = read_qrels(qrels_path) if qrels_path is not None else {}
    if judged:
        check_judged(f"{folder}", queries, corpus + (mixed or []), judgements, qrels_path)
    return Benchmark(
        subset,
        "mixbench",
        queries,
        corpus,
        judgements,
        mixed,
        source={
            "kind": "mixbench",
            "path": str(source),
            "subset": subset,
            "revision": rev,
            "qrels": str(qrels_path) if qrels_path else None,
            "format": "parquet" if files["corpus"][0].suffix == ".parquet" else "jsonl",
            "rule": "MixBench as shipped; ids read as written; images resolved under <subset>/images, images, "
            "<subset>, then the root, or embedded bytes stored in the cache",
        },
    )


def check_judged(
    name: str, queries: Sequence[Query], corpus: Sequence[Document], qrels: dict, where: Path | None
) -> None:
    """Refuse a benchmark none of whose queries has a judged document in its corpus: it would
    score 0 over 0 queries and look like a result."""
    doc_ids = {d.id for d in corpus}
    judged = [q.id for q in queries if any(d in doc_ids for d in qrels.get(q.id, {}))]
    if judged:
        return
    some_q = next(iter(qrels), None)
    some_d = next(iter(qrels[some_q]), None) if some_q is not None else None
    raise BenchError(
        f"{name}: no query is judged: none of the {len(queries)} queries (ids like "
        f"{queries[0].id if queries else '-'!r}) has a judged document (ids like "
        f"{next(iter(doc_ids), '-')!r}) in the qrels of {where} (which name queries like {some_q!r} and documents "
        f"like {some_d!r}); the ids do not match"
    )


def load_benchmark(
    path: str | Path,
    kind: str = "auto",
    subset: str | None = None,
    split: str | None = None,
    revision: str | None = None,
    seed: int = 0,
    qrels: str | Path | None = None,
) -> Benchmark:
    """Load a benchmark of ``kind`` (``auto``: detected) from ``path``; ``qrels`` judges a MixBench
    copy that ships none (see ``load_mixbench``)."""
    kind = detect_kind(path) if kind == "auto" else kind
    if kind == "beir":
        return load_beir(path, split or "test")
    if kind == "captions":
        return load_captions(path, split, seed)
    if kind == "mixbench":
        if not subset:
            raise BenchError("MixBench needs a subset (--subset MSCOCO, Google_WIT, VisualNews or OVEN)")
        return load_mixbench(path, subset, revision, qrels)
    raise BenchError(f"unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}")


def paired_media(docs: Sequence[Document]) -> str:
    """The media a corpus pairs with its texts: ``image``, or ``audio``/``video`` for a captions
    dataset of sound clips or videos (the most common among documents with text)."""
    counts = {m: sum(getattr(d, m) is not None and d.text is not None for d in docs) for m in CAPTIONED}
    best = max(CAPTIONED, key=lambda m: (counts[m], m == "image"))
    return best if counts[best] else "image"


def mixed_corpus(bench: Benchmark, seed: int) -> tuple[list[Document], str]:
    """The corpus setting 3 evaluates, and how it was made."""
    if bench.mixed is not None:
        return bench.mixed, "the dataset's own mixed corpus"
    media = paired_media(bench.corpus)
    paired = [d for d in bench.corpus if d.text is not None and getattr(d, media) is not None]
    if paired and len(paired) == len(bench.corpus):
        order = sorted(paired, key=lambda d: unit(seed, "mix", d.id))
        n = len(order)
        docs = [Document(id=d.id, text=d.text, where=d.where) for d in order[: n // 3]]
        docs += [Document(id=d.id, where=d.where, **{media: getattr(d, media)}) for d in order[n // 3 : 2 * n // 3]]
        docs += [
            Document(id=d.id, text=d.text, where=d.where, **{media: getattr(d, media)}) for d in order[2 * n // 3 :]
        ]
        return docs, f"seeded 1:1:1 text / {media} / {media}+text mix of the paired corpus (seed {seed})"
    return bench.corpus, "the corpus as given"

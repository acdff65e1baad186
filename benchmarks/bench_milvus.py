"""Milvus backend benchmark: the ``milvus`` index kind on Milvus Lite, on this machine.

    python benchmarks/bench_milvus.py [--n 1000000] [--dim 512] [--index-types FLAT,HNSW] [--work DIR]

N synthetic unit vectors (clustered like real embeddings: 2,000 centres plus noise), each with
a modality (text / image / image+text, 1:1:1) and a ``year`` field, go through
``MilvusIndex.build`` + ``save`` (what ``build_index(kind="milvus")`` does after fusing). For each
index type it measures:

- insert + build: ``save`` (collection created, rows inserted in batches, flushed, counted) and
  the time until the vector index is built and the collection loaded (``MilvusIndex.load``);
- peak RSS of this process plus the Milvus Lite server process(es) it starts, and the database's
  size on disk;
- latency: 1 query at a time (p50/p95 over 50) and one batch of 100 queries, k=10;
- recall@10 against exact search (numpy/torch over the same vectors, ``ExactIndex``);
- filtered search (modality in [image, multimodal] AND year >= 2010, about a third of the rows):
  latency and recall@10 against exact search over the rows the filter keeps.

Results: benchmarks/results/milvus.json and milvus.md, with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WHERE = "year >= 2010"
MODALITIES = frozenset({"image", "multimodal"})


def machine() -> dict:
    import pymilvus

    from mixsearch.bench import environment

    return {**environment(), "numpy": np.__version__, "pymilvus": pymilvus.__version__, "milvus_lite": _lite_version()}


def _lite_version() -> str:
    from importlib.metadata import version

    return version("milvus-lite")


def corpus(n: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, dim)).astype(np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        block = centres[rng.integers(0, len(centres), stop - start)] + 0.6 * rng.normal(size=(stop - start, dim))
        x[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    fields = {
        "modality": np.array(["text", "image", "multimodal"])[np.arange(n) % 3],
        "year": (1990 + rng.integers(0, 36, n)).astype(np.int64),
    }
    queries = centres[rng.integers(0, len(centres), 100)] + 0.6 * rng.normal(size=(100, dim))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    return x, [f"doc{i}" for i in range(n)], fields, queries


class PeakRSS:
    """Peak resident memory of this process and its descendants (the Milvus Lite server), sampled."""

    def __init__(self, every: float = 0.2):
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(os.getpid()))
            self._stop.wait(self.every)


def tree_rss(root: int) -> int:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def disk_size(path: Path) -> int:
    paths = [p for p in path.parent.iterdir() if p.name.startswith(path.name) or p.name.startswith("." + path.name)]
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


def wait_for_index(index, limit_s: float = 3600) -> dict:
    """Wait until Milvus has built the vector index over every row (it builds in the background)."""
    milvus = index._milvus()
    deadline = time.monotonic() + limit_s
    while True:
        state = milvus("describing the index", "describe_index", index.collection, "vector")
        if state.get("pending_index_rows", 0) == 0 and state.get("indexed_rows") == state.get("total_rows"):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return {k: state.get(k) for k in ("index_type", "total_rows", "indexed_rows", "pending_index_rows", "state")}


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / max(1, len(t)) for f, t in zip(found, truth)]))


def latencies(fn, queries: np.ndarray) -> dict:
    fn(queries[:1])  # warm
    ms = []
    for q in queries[:50]:
        start = time.perf_counter()
        fn(q[None])
        ms.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    fn(queries)
    batch = (time.perf_counter() - start) * 1000
    ordered = sorted(ms)
    return {
        "one_query_p50_ms": round(statistics.median(ms), 2),
        "one_query_p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        "batch_100_ms": round(batch, 1),
    }


def run(n: int, dim: int, index_type: str, work: Path, data) -> dict:
    from mixsearch.index import ExactIndex, Filter
    from mixsearch.index.milvus import MilvusIndex

    x, ids, fields, queries = data
    db = work / f"{index_type.lower()}.db"
    options = {"uri": str(db), "index_type": index_type, "collection": "bench"}
    if index_type == "HNSW":
        options.update(M=16, efConstruction=200, ef=64)
    shown = {k: v for k, v in options.items() if k != "uri"}
    out: dict = {"index_type": index_type, "n": n, "dim": dim, "options": shown}
    with PeakRSS() as peak:
        start = time.perf_counter()
        index = MilvusIndex.build(x, ids, fields, options=options)
        index.save(work / f"{index_type.lower()}-index" / "index-1")
        out["insert_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        index = MilvusIndex.load(work / f"{index_type.lower()}-index" / "index-1")
        out["index_state"] = wait_for_index(index)
        index.search(queries[:1], 10)
        out["index_and_load_s"] = round(time.perf_counter() - start, 1)
        exact = ExactIndex(x, ids, fields)
        truth = exact.search(queries, 10).ids
        out["recall_at_10"] = round(recall(index.search(queries, 10).ids, truth), 4)
        out["latency"] = latencies(lambda q: index.search(q, 10), queries)
        allowed = np.isin(fields["modality"], sorted(MODALITIES)) & (fields["year"] >= 2010)
        flt = Filter(modality=MODALITIES, where=WHERE)
        _, rows = exact.search_rows(queries, 10, allowed)
        truth = [[ids[r] for r in row if r >= 0] for row in rows]
        out["filtered"] = {
            "filter": f"modality in {sorted(MODALITIES)} AND {WHERE}",
            "share_of_rows": round(float(allowed.mean()), 3),
            "recall_at_10": round(recall(index.search(queries, 10, flt).ids, truth), 4),
            **latencies(lambda q: index.search(q, 10, flt), queries),
        }
        out["exact_numpy_latency"] = latencies(lambda q: exact.search(q, 10), queries)
    out["peak_rss_gib"] = round(peak.peak / 2**30, 2)
    out["disk_gib"] = round(disk_size(db) / 2**30, 3)
    out["vectors_gib"] = round(x.nbytes / 2**30, 3)
    return out


def to_markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# Milvus backend (Milvus Lite) benchmark",
        "",
        f"`python benchmarks/bench_milvus.py {r['args']}` — {r['date']}",
        "",
        f"Machine: {m['cpu']}, {m['nproc']} cores, {m.get('ram')} RAM, no GPU; Python {m['python']}, "
        f"torch {m['torch']}, pymilvus {m['pymilvus']}, milvus-lite {m['milvus_lite']}.",
        "",
        f"N = {r['n']:,} synthetic unit vectors of dimension {r['dim']} (clustered), k = 10. Latencies are "
        "wall-clock through `MilvusIndex.search` (Milvus Lite serves gRPC on localhost; every search crosses "
        "it). Exact = `ExactIndex` (torch matmul + top-k) over the same vectors in memory.",
        "",
        "| index_type | insert s | index built + loaded s | peak RSS GiB | disk GiB | recall@10 | 1 query p50 / p95 ms "
        "| 100 queries ms | filtered recall@10 | filtered 1 query p50 ms | filtered 100 queries ms |"
        " exact 1 query p50 ms | exact 100 queries ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in r["runs"]:
        lat, flt, ex = x["latency"], x["filtered"], x["exact_numpy_latency"]
        lines.append(
            f"| {x['index_type']} | {x['insert_s']} | {x['index_and_load_s']} | {x['peak_rss_gib']} | "
            f"{x['disk_gib']} | {x['recall_at_10']} | {lat['one_query_p50_ms']} / {lat['one_query_p95_ms']} | "
            f"{lat['batch_100_ms']} | {flt['recall_at_10']} | {flt['one_query_p50_ms']} | {flt['batch_100_ms']} | "
            f"{ex['one_query_p50_ms']} | {ex['batch_100_ms']} |"
        )
    lines += [
        "",
        f"Filter: `{r['runs'][0]['filtered']['filter']}` (keeps {r['runs'][0]['filtered']['share_of_rows']:.0%} "
        "of the rows), translated to a Milvus expression. Vectors in memory: "
        f"{r['runs'][0]['vectors_gib']} GiB float32. Peak RSS counts this process (which holds the vectors "
        "and the exact index) and the Milvus Lite server.",
    ]
    if r.get("notes"):
        lines += ["", *r["notes"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--index-types", default="FLAT,HNSW")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", action="append", default=[], help="a line added to the report")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-milvus-", dir=args.work))
    data = corpus(args.n, args.dim)
    result = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "args": " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "n": args.n,
        "dim": args.dim,
        "runs": [],
        "notes": args.note,
    }
    try:
        for index_type in args.index_types.split(","):
            result["runs"].append(run(args.n, args.dim, index_type.strip().upper(), work, data))
            print(json.dumps(result["runs"][-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "milvus.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "milvus.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()

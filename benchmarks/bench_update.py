"""Issue 11: the cost of changing an index in place, and float16 storage.

1. A full build of N documents (dim 256, like the bundled model) through ``build_index`` with
   encoding excluded: ``documents.embed`` is replaced by a lookup of pre-made vectors by document id,
   so everything else (reading, fusing, the Parquet table, the index, the commit) is the real code.
2. ``MixIndex.add`` of 1% new documents (same lookup), and ``MixIndex.delete`` of 1%, each
   relative to the build's time.
3. Exact search, float32 vs float16 storage: latency of 1 query and of a 100-query batch, and
   recall@10 of float16 against float32's exact answer.

Run: ``PYTHONPATH=src python benchmarks/bench_update.py --n 1000000`` (writes
``benchmarks/results/bench_update.{json,md}``).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import mixsearch as ms
from mixsearch.embedding.pipeline import Embedded
from mixsearch.encoders.base import Encoder
from mixsearch.engine import documents
from mixsearch.index import ExactIndex

DIM = 256


def vectors_of(ids: list[str]) -> np.ndarray:
    """Pre-made unit vectors, the same for the same id (seeded by the id's number)."""
    rows = np.array([int(i[1:]) for i in ids], dtype=np.int64)
    out = BASIS[rows % len(BASIS)] + (rows // len(BASIS))[:, None].astype(np.float32) * 0.05
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


BASIS = np.random.default_rng(0).standard_normal((65536, DIM)).astype(np.float32)


def lookup_embed(encoder, items, modality, *, doc_ids=None, **_):
    """Stands in for ``documents.embed``: no model, no cache, the vectors looked up by document id."""
    return Embedded(vectors_of(list(doc_ids)), np.ones(len(items), bool), np.zeros(len(items), bool), 0, len(items))


class LookupEncoder(Encoder):
    """A text 'model' that never runs (the benchmark's vectors come from ``lookup_embed``)."""

    name, fingerprint, dim, modalities, max_length = "lookup", "lookup-256", DIM, frozenset({"text"}), 64

    def _encode_batch(self, batch, modality):
        return vectors_of([f"d{abs(hash(t)) % 1000}" for t in batch]), [False] * len(batch)


def corpus(path: Path, start: int, n: int) -> Path:
    with path.open("w") as f:
        for i in range(start, start + n):
            f.write(json.dumps({"id": f"d{i}", "text": f"document {i}", "year": 2000 + i % 25}) + "\n")
    return path


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def search_speed(vectors: np.ndarray, queries: np.ndarray, reps: int = 5) -> dict:
    ids = [str(i) for i in range(len(vectors))]
    result = {}
    exact = {}
    for dtype in ("float32", "float16"):
        index = ExactIndex.build(vectors, ids, options={"dtype": dtype})
        index.search(queries[:1], k=10)  # warm
        one = min(timed(lambda index=index: index.search(queries[:1], k=10))[0] for _ in range(reps))
        batch = min(timed(lambda index=index: index.search(queries, k=10))[0] for _ in range(reps))
        exact[dtype] = index.search(queries, k=10).ids
        result[dtype] = {"one_query_ms": round(one * 1000, 2), "batch_100_ms": round(batch * 1000, 1)}
        del index
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact["float32"], exact["float16"])])
    result["float16_recall_at_10_vs_float32"] = round(float(recall), 4)
    return result


def machine() -> str:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    mem = Path("/proc/meminfo").read_text().split()[1]
    import torch

    cores = len(__import__("os").sched_getaffinity(0))
    return (
        f"{model}, {cores} cores, {int(mem) / 2**20:.1f} GiB, no GPU, torch {torch.__version__} CPU, "
        f"Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--change", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    documents.embed = lookup_embed  # encoding excluded: every other step is the real code path
    n, m = args.n, int(args.n * args.change)
    work = Path(tempfile.mkdtemp(prefix="bench-update-"))
    try:
        base = corpus(work / "base.jsonl", 0, n)
        extra = corpus(work / "extra.jsonl", n, m)
        encoder = LookupEncoder()
        build_s, (index, _) = timed(
            lambda: ms.build_index(base, work / "idx", encoder, calibration=None, progress=False)
        )
        open_s, opened = timed(lambda: ms.open_index(work / "idx", encoder=encoder))
        add_s, report = timed(lambda: opened.add(extra, progress=False))
        index = opened
        assert report.added == m and len(index) == n + m
        doomed = [f"d{i}" for i in range(0, n, max(1, n // m))][:m]
        delete_s, removed = timed(lambda: opened.delete(doomed))
        assert removed == len(doomed) and len(index) == n + m - removed
        hits = index.search_vectors(vectors_of(["d5"]), k=10, where="year = 2005")
        assert len(hits[0]) == 10 and all(h.metadata["year"] == 2005 for h in hits[0])
        disk = sum(p.stat().st_size for p in (work / "idx").rglob("*") if p.is_file())
        rng = np.random.default_rng(1)
        vectors = np.asarray(index.index.vectors)
        noise = rng.standard_normal((100, DIM)).astype(np.float32) * 0.05
        queries = vectors[rng.choice(len(vectors), 100, replace=False)] + noise
        del index
        speed = search_speed(vectors, queries.astype(np.float32))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {
        "machine": machine(),
        "documents": n,
        "changed": m,
        "dim": DIM,
        "build_seconds_without_encoding": round(build_s, 2),
        "open_seconds": round(open_s, 2),
        "add_seconds": round(add_s, 2),
        "add_share_of_build": round(add_s / build_s, 4),
        "delete_seconds": round(delete_s, 2),
        "delete_share_of_build": round(delete_s / build_s, 4),
        "index_folder_bytes_after": disk,
        "exact_search": speed,
        "command": f"PYTHONPATH=src python benchmarks/bench_update.py --n {n}",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_update.json").write_text(json.dumps(results, indent=2) + "\n")
    s = speed
    md = f"""# Updates in place and float16 storage (issue 11)

Machine: {results["machine"]}. Command: `{results["command"]}`. One run (the 2 cores were shared
with other jobs, so times are indicative to about +-20%).

| step | seconds | share of the build |
|---|---:|---:|
| build {n:,} documents, encoding excluded | {build_s:.1f} | 1 |
| open the index | {open_s:.1f} | {open_s / build_s:.3f} |
| add {m:,} documents (1%) | {add_s:.1f} | {add_s / build_s:.4f} |
| delete {m:,} documents (1%) | {delete_s:.1f} | {delete_s / build_s:.4f} |

Exact search over {len(vectors):,} vectors of dimension {DIM}, k=10 (best of 5):

| storage | 1 query (ms) | 100-query batch (ms) |
|---|---:|---:|
| float32 | {s["float32"]["one_query_ms"]} | {s["float32"]["batch_100_ms"]} |
| float16 | {s["float16"]["one_query_ms"]} | {s["float16"]["batch_100_ms"]} |

float16 recall@10 against float32's exact top 10: {s["float16_recall_at_10_vs_float32"]}.
"""
    (args.out / "bench_update.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

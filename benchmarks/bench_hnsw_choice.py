"""Which HNSW library backs the ``hnsw`` index kind: usearch or faiss-cpu, measured.

    python benchmarks/bench_hnsw_choice.py [--n 100000] [--dim 512] [--threads 2]

Both are built with the same graph settings (M = connectivity 32, expansion at build 100) over the
same clustered unit vectors (inner product), then searched at several search expansions. For each:
build time, recall@10 against exact search, queries/s of a 1,000-query batch and single-query
latency, the expansion each needs for recall@10 >= 0.95, memory growth when the saved index is
opened memory-mapped, whether filtered search (a predicate inside the graph walk) and deletion
exist in its Python API. Results: benchmarks/results/hnsw_choice.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def clustered(n: int, dim: int, seed: int, centres: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dim)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + 0.9 * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def run_faiss(x, q, truth, k, efs, threads, work):
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 100
    t = time.perf_counter()
    index.add(x)
    build = time.perf_counter() - t
    out = {"build_s": round(build, 2), "search": []}
    for ef in efs:
        params = faiss.SearchParametersHNSW(efSearch=ef)
        t = time.perf_counter()
        _, rows = index.search(q, k, params=params)
        batch = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(100):
            index.search(q[i : i + 1], k, params=params)
        single = (time.perf_counter() - t) / 100
        out["search"].append(_row(ef, rows, truth, batch, len(q), single))
    # filtered: 1% of rows allowed, inside the graph walk
    allowed = np.zeros(len(x), bool)
    allowed[::100] = True
    bitmap = np.packbits(allowed, bitorder="little")
    params = faiss.SearchParametersHNSW(efSearch=128, sel=faiss.IDSelectorBitmap(len(x), faiss.swig_ptr(bitmap)))
    t = time.perf_counter()
    _, rows = index.search(q[:100], k, params=params)
    sub = np.flatnonzero(allowed)
    sub_truth = sub[np.argsort(-(q[:100] @ x[sub].T), axis=1)[:, :k]]
    out["filtered_1pct"] = {
        "recall@10": round(recall(rows, sub_truth), 4),
        "full_k": bool((rows >= 0).all()),
        "ms_per_query": round((time.perf_counter() - t) * 10, 3),
    }
    path = str(work / "faiss.index")
    faiss.write_index(index, path)
    del index
    before = rss_mib()
    loaded = faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC)
    out["mmap_open_rss_growth_mib"] = round(rss_mib() - before, 1)
    out["file_mib"] = round(os.path.getsize(path) / 2**20, 1)
    try:
        loaded.remove_ids(np.array([0], dtype=np.int64))
        out["delete"] = "yes"
    except RuntimeError:
        out["delete"] = "no: IndexHNSW.remove_ids is not implemented (needs tombstones + filter)"
    out["filtered_search"] = "yes: SearchParametersHNSW(sel=IDSelectorBitmap) inside the graph walk"
    return out


def run_usearch(x, q, truth, k, efs, threads, work):
    from usearch.index import Index

    index = Index(ndim=x.shape[1], metric="ip", dtype="f32", connectivity=32, expansion_add=100)
    keys = np.arange(len(x), dtype=np.uint64)
    t = time.perf_counter()
    index.add(keys, x, threads=threads)
    build = time.perf_counter() - t
    out = {"build_s": round(build, 2), "search": []}
    for ef in efs:
        index.expansion_search = ef
        t = time.perf_counter()
        rows = index.search(q, k, threads=threads).keys
        batch = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(100):
            index.search(q[i], k)
        single = (time.perf_counter() - t) / 100
        out["search"].append(_row(ef, rows.astype(np.int64), truth, batch, len(q), single))
    path = str(work / "usearch.index")
    index.save(path)
    del index
    before = rss_mib()
    loaded = Index.restore(path, view=True)
    out["mmap_open_rss_growth_mib"] = round(rss_mib() - before, 1)
    out["file_mib"] = round(os.path.getsize(path) / 2**20, 1)
    out["delete"] = "yes: Index.remove (on a loaded copy; a view is read-only)"
    out["filtered_search"] = "no predicate in the Python API (2.x): only post-filtering of over-fetched hits"
    del loaded
    return out


def _row(ef, rows, truth, batch_s, n, single_s):
    return {
        "ef_search": ef,
        "recall@10": round(recall(rows, truth), 4),
        "batch_qps": round(n / batch_s, 1),
        "single_ms": round(single_s * 1e3, 3),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    import faiss
    import usearch

    from mixsearch.bench import environment

    x = clustered(args.n, args.dim, 0)
    q = clustered(args.n + 1000, args.dim, 0)[args.n :]
    k, efs = 10, [16, 32, 64, 128, 256]
    truth = np.argsort(-(q @ x.T), axis=1)[:, :k]
    results = {
        "machine": environment(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "data": f"{args.n} clustered unit vectors, dim {args.dim}; 1000 queries; M=32, ef_construction=100",
        "threads": args.threads,
        "versions": {"faiss": faiss.__version__, "usearch": usearch.__version__},
    }
    with tempfile.TemporaryDirectory() as tmp:
        results["faiss"] = run_faiss(x, q, truth, k, efs, args.threads, Path(tmp))
        results["usearch"] = run_usearch(x, q, truth, k, efs, args.threads, Path(tmp))
    for lib in ("faiss", "usearch"):
        ok = [r for r in results[lib]["search"] if r["recall@10"] >= 0.95]
        results[lib]["first_ef_at_recall_0.95"] = ok[0] if ok else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hnsw_choice.json").write_text(json.dumps(results, indent=2))
    (args.out / "hnsw_choice.md").write_text(to_markdown(results))
    print(to_markdown(results))


def to_markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"# HNSW library choice ({r['date']})",
        "",
        f"Machine: {m['cpu']}, {m['nproc']} cores (shared with other jobs), {m['ram']}. "
        f"faiss {r['versions']['faiss']}, usearch {r['versions']['usearch']}, {r['threads']} threads.",
        f"Data: {r['data']}.",
        "",
        "| library | ef_search | recall@10 | batch qps | single-query ms |",
        "|---|---|---|---|---|",
    ]
    for lib in ("faiss", "usearch"):
        for s in r[lib]["search"]:
            lines.append(f"| {lib} | {s['ef_search']} | {s['recall@10']} | {s['batch_qps']} | {s['single_ms']} |")
    lines += ["", "| | faiss | usearch |", "|---|---|---|"]
    for key in ("build_s", "file_mib", "mmap_open_rss_growth_mib", "filtered_search", "delete"):
        lines.append(f"| {key} | {r['faiss'].get(key)} | {r['usearch'].get(key)} |")
    f = r["faiss"]["filtered_1pct"]
    lines.append(
        f"| filtered (1% pass) recall@10 / ms per query | {f['recall@10']} / {f['ms_per_query']} (full k: "
        f"{f['full_k']}) | n/a |"
    )
    for lib in ("faiss", "usearch"):
        best = r[lib]["first_ef_at_recall_0.95"]
        lines.append(f"\n{lib}: first ef_search reaching recall@10 >= 0.95: {best}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""Scale benchmark: exact and HNSW indexes (float32 and float16) on 1M realistic vectors.

    python benchmarks/bench_scale.py [--n 1000000] [--kinds exact,exact:float16,hnsw,hnsw:float16]
                                     [--kind-option milvus:uri=/tmp/m.db] [--work /tmp/mixsearch-scale]

The vectors are derived from the bundled model's embeddings of Flickr8k and SciFact
(``realistic_vectors.py`` says how, and the results compare their nearest-neighbour scores with the
real ones'). Queries: held-out Flickr8k captions (``--queries``, text queries as the engine searches).

Each kind runs in its own subprocess (so its peak RSS, ``getrusage`` maxrss, is its own):
build through the index protocol (``build_index_of_kind``), save, reopen as the engine does
(memory-mapped), then single-query latency (100 queries one by one), a 100-query batch,
recall@10 against exact float32, and filtered search (a modality filter passing ~37% of rows, and a
metadata-like filter passing ~1%). A kind is ``NAME[:DTYPE]``; any registered kind can be named
(e.g. ``milvus``, with ``--kind-option milvus:uri=...``), so others join the table by name.

Memory bandwidth floor: streaming bandwidth is measured (numpy sum over 1 GiB); exact search must
read every stored byte per query batch, so bytes / bandwidth is the least its latency can be.

Results: benchmarks/results/scale.md and .json, with the machine (2 cores, shared with other jobs
while this ran: latencies are noisy upwards, never downwards).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
K = 10


def machine() -> dict:
    from mixsearch.bench import environment

    info = environment()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("Model name")
        )
        info["cpu"] = model
    except (OSError, StopIteration):
        pass
    import faiss

    return {**info, "numpy": np.__version__, "faiss": faiss.__version__}


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM, which (unlike getrusage's maxrss, kept across exec) starts
    afresh in a child process; maxrss where /proc is absent."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_parts() -> dict:
    """Resident memory now, anonymous (owned) vs file-backed (mapped files' pages), MiB."""
    try:
        with open("/proc/self/status") as f:
            parts = {k: int(v.split()[0]) / 1024 for k, v in (line.split(":", 1) for line in f) if k.startswith("Rss")}
        return {k: round(v, 1) for k, v in parts.items()}
    except OSError:
        return {}


def bandwidth_gib_s(gib: float = 1.0) -> dict:
    """Streaming read bandwidth over ``gib`` GiB of float32: the best of bench_speed's kernels
    (numpy sum, ones @ M, copy), each the mean of 3 passes."""
    from bench_speed import streaming_rates

    matrix = np.ones((int(gib * 2**30 / 4096), 1024), dtype=np.float32)
    rates = {name: round(rate / 2**30, 2) for name, rate in streaming_rates(matrix).items()}
    return {"best": max(rates.values()), **rates}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- data ----------------------------------------------------------------------------------------


def prepare(work: Path, n: int, n_queries: int) -> dict:
    """Derive the vectors and fields (cached in ``work``), and the exact float32 ground truth."""
    import realistic_vectors as rv

    from mixsearch.config import cache_root

    real = rv.real_embeddings(cache_root() / "bench-scale")
    vectors_path, fields_path = work / f"vectors-{n}.npy", work / f"fields-{n}.npz"
    if not (vectors_path.is_file() and fields_path.is_file()):
        start = time.perf_counter()
        _, fields = rv.derive(real, n, vectors_path)
        np.savez(fields_path, **fields)
        print(f"derived {n} vectors in {time.perf_counter() - start:.0f} s", flush=True)
    vectors = np.load(vectors_path, mmap_mode="r")
    fields = dict(np.load(fields_path))
    queries = real["queries"][:n_queries]
    np.save(work / "queries.npy", queries)
    truth_path = work / f"truth-{n}-{len(queries)}.npz"
    if not truth_path.is_file():
        from mixsearch.index import ExactIndex

        exact = ExactIndex(vectors, [str(i) for i in range(n)], fields)
        truth = {"all": exact.search_rows(queries, K)[1]}
        for name, mask in filters(fields).items():
            truth[name] = exact.search_rows(queries, K, mask(fields))[1]
        np.savez(truth_path, **truth)
    return {"profile": rv.compare(real, vectors), "real_counts": {m: len(real[m]) for m in real}}


def filters(fields: dict) -> dict:
    """The benchmark's filters, as functions of the fields giving a boolean mask."""
    return {
        "modality=image": lambda f: np.asarray(f["modality"]) == "image",
        "bucket=0 (1%)": lambda f: np.asarray(f["bucket"]) == 0,
    }


def make_filter(name: str):
    """The index ``Filter`` of a benchmark filter: a modality filter, or for the metadata-like
    one an SQL ``where`` when this mixsearch evaluates it, else the same condition as a mask."""
    from mixsearch.index import Filter

    if name == "modality=image":
        return Filter.of("image")
    where = Filter(where="bucket = 0")
    try:
        probe = where.mask({"bucket": np.array([0, 1])}, 2)
    except Exception:  # noqa: BLE001 - any failure: this mixsearch has no SQL filters yet
        probe = None
    if probe is not None and probe.tolist() == [True, False]:
        return where

    class Bucket(Filter):
        def mask(self, fields, n):
            return np.asarray(fields["bucket"]) == 0

    return Bucket()


# -- one kind, in its own process ------------------------------------------------------------------


def run_one(work: Path, n: int, spec: str, options: dict) -> dict:
    from mixsearch.index import build_index_of_kind, load_index

    kind, _, dtype = spec.partition(":")
    options = dict(options)
    if dtype:
        options["dtype"] = dtype
    vectors = np.load(work / f"vectors-{n}.npy", mmap_mode="r")
    fields = dict(np.load(work / f"fields-{n}.npz"))
    queries = np.load(work / "queries.npy")
    truth = dict(np.load(work / f"truth-{n}-{len(queries)}.npz"))
    ids = [str(i) for i in range(n)]
    out: dict = {"kind": kind, "options": options, "rss_start_mib": round(rss_mib(), 1)}
    out["load_average_1min_start"] = round(os.getloadavg()[0], 1)  # other jobs on the 2 cores
    folder = work / f"index-{spec.replace(':', '-')}"
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    try:
        index = build_index_of_kind(kind, vectors, ids, fields, options=options)
        note = None
    except Exception as err:  # noqa: BLE001 - e.g. an exact index without a dtype option yet
        if kind != "exact" or "dtype" not in options:
            raise
        from mixsearch.index import ExactIndex

        note = f"exact kind refused dtype ({err}); measured ExactIndex over float16 rows directly"
        half = np.empty(vectors.shape, dtype=np.float16)
        for s in range(0, n, 65536):
            half[s : s + 65536] = vectors[s : s + 65536]
        index = ExactIndex(half, ids, fields)
    out["build_s"] = round(time.perf_counter() - start, 1)
    if note is None:
        index.save(folder)
        out["save_s"] = round(time.perf_counter() - start - out["build_s"], 1)
        out["disk_mib"] = round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1)
        del index
        before = rss_mib()
        index = load_index(folder, kind)
        out["open_rss_growth_mib"] = round(rss_mib() - before, 1)
    else:
        out["note"] = note
        out["disk_mib"] = round(index.vectors.nbytes / 2**20, 1)
    out.update(measure(index, queries, truth, n))
    if kind == "hnsw":  # the same graph searched with more or fewer candidates
        out["ef_search_sweep"] = sweep(index, queries, truth)
    out["peak_rss_mib"] = round(peak_rss_mib(), 1)
    out["rss_end_mib"] = rss_parts()  # file-backed: pages of memory-mapped files (input vectors, index)
    out["load_average_1min_end"] = round(os.getloadavg()[0], 1)
    shutil.rmtree(folder, ignore_errors=True)
    return out


def rows_of(found) -> list[list[int]]:
    return [[int(i) for i in ids] for ids in found.ids]


def recall(found: list[list[int]], expected: np.ndarray) -> float:
    share = [len(set(f) & set(e[e >= 0])) / max(1, int((e >= 0).sum())) for f, e in zip(found, expected)]
    return round(float(np.mean(share)), 4)


def sweep(index, queries: np.ndarray, truth: dict) -> list[dict]:
    out = []
    default = index.ef_search
    for ef in (16, 32, 64, 128, 256):
        index.ef_search = ef
        single = [_timed(lambda i=i: index.search(queries[i : i + 1], K)) for i in range(100)]
        batch = _timed(lambda: index.search(queries[:100], K))
        out.append(
            {
                "ef_search": ef,
                "recall@10": recall(rows_of(index.search(queries, K)), truth["all"]),
                "single_ms_median": round(1e3 * float(np.median(single)), 2),
                "qps_batch100": round(100 / batch, 1),
            }
        )
    index.ef_search = default
    return out


def measure(index, queries: np.ndarray, truth: dict, n: int) -> dict:
    index.search(queries[:100], K)  # warm: pages in, threads up
    single = [_timed(lambda i=i: index.search(queries[i : i + 1], K)) for i in range(100)]
    batches = [_timed(lambda: index.search(queries[:100], K)) for _ in range(3)]
    found = rows_of(index.search(queries, K))
    out = {
        "single_ms_median": round(1e3 * float(np.median(single)), 2),
        "single_ms_p95": round(1e3 * float(np.quantile(single, 0.95)), 2),
        "batch100_ms_median": round(1e3 * float(np.median(batches)), 1),
        "qps_single": round(1 / float(np.median(single)), 1),
        "qps_batch100": round(100 / float(np.median(batches)), 1),
        "recall@10": recall(found, truth["all"]),
        "filtered": {},
    }
    for name in filters({}):
        filt = make_filter(name)
        times = [_timed(lambda i=i, f=filt: index.search(queries[i : i + 1], K, f)) for i in range(50)]
        got = index.search(queries, K, filt)
        out["filtered"][name] = {
            "filter": type(filt).__name__ + (f" where {filt.where!r}" if filt.where else ""),
            "single_ms_median": round(1e3 * float(np.median(times)), 2),
            "recall@10": recall(rows_of(got), truth[name]),
            "always_k": all(len(ids) == K for ids in got.ids),
        }
    return out


# -- the table -------------------------------------------------------------------------------------


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--kinds", default="exact,hnsw,exact:float16,hnsw:float16")
    parser.add_argument("--queries", type=int, default=500, help="queries for recall (held-out captions, <= 1000)")
    parser.add_argument("--kind-option", action="append", default=[], help="KIND:NAME=VALUE (repeatable)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mixsearch-scale"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: one kind, in a child
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--merge", action="store_true", help="keep rows of kinds not rerun from the last results")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(run_one(args.work, args.n, args.one, json.loads(args.options))))
        return

    from mixsearch.cli._app import parse_index_options

    kind_options: dict[str, list[str]] = {}
    for item in args.kind_option:
        kind, _, pair = item.partition(":")
        kind_options.setdefault(kind, []).append(pair)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = "PYTHONPATH=src python benchmarks/bench_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results: dict = {"machine": machine(), "date": started, "n": args.n, "k": K, "command": command.strip()}
    results["data"] = prepare(args.work, args.n, args.queries)
    results["queries"] = args.queries
    results["bandwidth_gib_s"] = bandwidth_gib_s()
    previous = args.out / "scale.json"
    results["kinds"] = json.loads(previous.read_text())["kinds"] if args.merge and previous.is_file() else {}
    for spec in args.kinds.split(","):
        options = parse_index_options(kind_options.get(spec.partition(":")[0], []))
        print(f"running {spec} ...", flush=True)
        child = subprocess.run(
            [sys.executable, __file__, "--one", spec, "--options", json.dumps(options), "--n", str(args.n),
             "--work", str(args.work)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        )  # fmt: skip
        if child.returncode != 0:
            results["kinds"][spec] = {"error": child.stderr.strip().splitlines()[-1:]}
        else:
            results["kinds"][spec] = json.loads(child.stdout.strip().splitlines()[-1])
        print(json.dumps(results["kinds"][spec]), flush=True)
        write(results, args.out, args.n)  # after each kind, so a long run leaves what it measured


def write(results: dict, out: Path, n: int) -> None:
    exact = results["kinds"].get("exact", {})
    if "single_ms_median" in exact:
        bytes_scanned = n * 512 * 4
        floor_ms = 1e3 * bytes_scanned / 2**30 / results["bandwidth_gib_s"]["best"]
        results["bandwidth_floor"] = {
            "bytes_scanned_per_query_mib": round(bytes_scanned / 2**20, 1),
            "floor_ms": round(floor_ms, 2),
            "exact_single_vs_floor": round(exact["single_ms_median"] / floor_ms, 2),
            "exact_batch100_vs_floor": round(exact["batch100_ms_median"] / floor_ms, 2),
        }
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(results, indent=2))
    (out / "scale.md").write_text(to_markdown(results))


def to_markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"# Scale benchmark: {r['n']:,} vectors ({r['date']})",
        "",
        f"Machine: {m['cpu']}, {m['nproc']} cores, {m['ram']}, no GPU; Python {m['python']}, numpy "
        f"{m['numpy']}, torch {m['torch']}, faiss {m['faiss']}. The 2 cores were shared with other jobs "
        "while this ran (the 1-minute load average at the start and end of each row is in the table; "
        "above 2, every multi-threaded step waits for a core), so times are inflated, never deflated.",
        "",
        f"Command: `{r.get('command', 'PYTHONPATH=src python benchmarks/bench_scale.py')}` (see its docstring). "
        "Vectors: "
        "derived from mixclip-flickr8k embeddings of Flickr8k + SciFact (benchmarks/realistic_vectors.py); "
        ""
        f"{r.get('queries', 1000)} held-out caption queries; recall@10 against exact float32.",
        "",
        "| kind | build s | peak RSS MiB | disk MiB | 1 query ms (median / p95) | 100-query batch ms | "
        "qps (single / batch) | recall@10 | modality filter ms / recall | 1% filter ms / recall | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for spec, k in r["kinds"].items():
        if "error" in k:
            lines.append(f"| {spec} | error: {k['error']} |||||||||")
            continue
        f1, f2 = k["filtered"]["modality=image"], k["filtered"]["bucket=0 (1%)"]
        lines.append(
            f"| {spec} {k['options'] or ''} | {k['build_s']} | {k['peak_rss_mib']} | {k['disk_mib']} | "
            f"{k['single_ms_median']} / {k['single_ms_p95']} | {k['batch100_ms_median']} | "
            f"{k['qps_single']} / {k['qps_batch100']} | {k['recall@10']} | "
            f"{f1['single_ms_median']} / {f1['recall@10']} | {f2['single_ms_median']} / {f2['recall@10']} | "
            f"{k.get('load_average_1min_start')} -> {k.get('load_average_1min_end')} |"
        )
    for spec, k in r["kinds"].items():
        if k.get("ef_search_sweep"):
            lines += ["", f"{spec}, the same graph searched with other ef_search values:", ""]
            lines += ["| ef_search | recall@10 | 1 query ms | qps (100-query batch) |", "|---|---|---|---|"]
            lines += [
                f"| {e['ef_search']} | {e['recall@10']} | {e['single_ms_median']} | {e['qps_batch100']} |"
                for e in k["ef_search_sweep"]
            ]
    notes = [f"- {spec}: {k['note']}" for spec, k in r["kinds"].items() if k.get("note")]
    if notes:
        lines += ["", *notes]
    bw = r["bandwidth_gib_s"]
    lines += [
        "",
        f"Streaming read bandwidth over 1 GiB: {bw['best']} GiB/s (best of sum {bw['sum']}, ones @ M "
        f"{bw['ones_at_M']}, copy {bw['copy']} GiB/s).",
    ]
    if "bandwidth_floor" in r:
        b = r["bandwidth_floor"]
        lines.append(
            f"Exact search reads {b['bytes_scanned_per_query_mib']} MiB per query (or batch): floor "
            f"{b['floor_ms']} ms; exact single query = {b['exact_single_vs_floor']}x the floor, "
            f"100-query batch = {b['exact_batch100_vs_floor']}x."
        )
    lines += [
        "",
        "Notes. Peak RSS counts the pages of memory-mapped files a process touched: the input vectors "
        "(read through a memory map by every row: 1,953 MiB at 1M) and the opened index's own mapped "
        "vectors; `rss_end_mib` in the JSON splits anonymous from file-backed memory. The bandwidth "
        "probe runs once, in the parent, at a different moment (and load) than each row's searches: "
        "on this shared machine it has read from 11 to 25 GB/s (benchmarks/results/speed.md, quiet: "
        "25.3 GB/s, floor 80.8 ms at 1M), so the floor ratio is only as good as that probe. "
        "exact:float16 rows (when present) measure ExactIndex over float16 rows directly where the exact "
        "kind has no `dtype` option yet.",
    ]
    ex, hn = r["kinds"].get("exact", {}), r["kinds"].get("hnsw", {})
    if "qps_single" in ex and "qps_single" in hn:
        lines.append(
            f"HNSW / exact queries per second: {hn['qps_single'] / ex['qps_single']:.1f}x single, "
            f"{hn['qps_batch100'] / ex['qps_batch100']:.1f}x in 100-query batches, at recall@10 {hn['recall@10']}."
        )
    p = r["data"]["profile"]
    lines += [
        "",
        f"Realism check ({p['real_documents']} real documents vs as many derived ones, 1,000 sampled rows each):",
        "",
        "| | top-1 NN score q10/q50/q90 | 10th NN score q10/q50/q90 | random pair mean | spectrum top-10 share |",
        "|---|---|---|---|---|",
    ]
    for name in ("real", "derived_sample"):
        s = p[name]
        lines.append(
            f"| {name} | {s['top1_quantiles_10_50_90']} | {s['top10_quantiles_10_50_90']} | "
            f"{s['random_pair_mean']} | {s['spectrum_top10_share']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

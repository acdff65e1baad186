"""Serving benchmark: `mixsearch serve` end to end over HTTP on this machine.

    python benchmarks/bench_serve.py [--flickr8k ../shared/data/flickr8k] [--docs 100000] [--work DIR]

For two indexes — the offline demo's (150 Flickr8k photos, calibrated) and a 100,000-document
mixed corpus built from Flickr8k (1:1:1 text / image / image+text; the 7,000 photos and the
first caption of each repeated under distinct ids, so each is encoded once but the index holds
100k vectors: search cost does not depend on how distinct they are) —
it starts `mixsearch serve` as a user would and measures:

- serve-to-ready: from starting the process to the first 200 from /health (Python, torch, the
  index and the model loaded, the model warmed up);
- warm query latency, one client, one keep-alive connection, end to end over HTTP (client clock):
  text queries (GET /api/search), image queries (POST /api/search with a JPEG upload), and text
  queries under the plain view; p50 / p95 / mean;
- throughput (queries/s) with concurrent clients, text and image;
- `mixsearch search --url` (a fresh CLI process asking the server) and, once, `mixsearch search`
  without a server, for comparison.

Results: benchmarks/results/serve.json and serve.md, with the machine (``bench.environment()``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlparse

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "flickr8k"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(ms: list[float]) -> dict:
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


class Server:
    """`mixsearch serve` in a child process on 127.0.0.1 (stopped with Ctrl-C at the end)."""

    def __init__(self, index: Path):
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            ["timeout", "--foreground", "-s", "INT", "3600", sys.executable, "-m", "mixsearch", "serve", str(index)]
            + ["--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        self.lines = []
        for line in self.process.stdout:
            self.lines.append(line)
            found = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
            if found:
                self.url = found.group(1)
                break
        else:
            raise RuntimeError("server did not start:\n" + "".join(self.lines))
        threading.Thread(target=lambda: [self.lines.append(x) for x in self.process.stdout], daemon=True).start()
        parsed = urlparse(self.url)
        self.host, self.port = parsed.hostname, parsed.port
        while True:  # the first answer from /health
            try:
                status = self.connection().request_status("/health")
            except OSError:
                status = None
            if status == 200:
                break
            time.sleep(0.01)
        self.ready_s = time.perf_counter() - self.started

    def connection(self) -> Connection:
        """A new keep-alive connection to the server."""
        return Connection(self.host, self.port)

    def stop(self) -> None:
        """Ctrl-C."""
        self.process.send_signal(2)
        self.process.wait(timeout=60)


class Connection:
    """One keep-alive HTTP connection."""

    def __init__(self, host: str, port: int):
        self.http = http.client.HTTPConnection(host, port, timeout=120)

    def request_status(self, path: str) -> int:
        """The status of a GET."""
        self.http.request("GET", path)
        response = self.http.getresponse()
        response.read()
        return response.status

    def get(self, path: str) -> dict:
        """A GET's JSON answer."""
        self.http.request("GET", path)
        response = self.http.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
        return json.loads(body)

    def upload(self, data: bytes, fields: dict) -> dict:
        """POST /api/search with an image."""
        boundary = "benchboundary"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
        parts.append(f"--{boundary}--\r\n".encode())
        self.http.request(
            "POST", "/api/search", b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        response = self.http.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"upload: {response.status} {body[:200]!r}")
        return json.loads(body)


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - start) * 1000)
    return out


def throughput(server: Server, make_request, items, clients: int) -> dict:
    """``len(items)`` requests shared by ``clients`` threads, each with its own connection."""
    chunks = [items[i::clients] for i in range(clients)]
    errors = []
    latencies: list[float] = []

    def work(chunk):
        connection = server.connection()
        for item in chunk:
            start = time.perf_counter()
            try:
                make_request(connection, item)
            except Exception as err:  # counted, reported
                errors.append(str(err))
                connection = server.connection()
            latencies.append((time.perf_counter() - start) * 1000)

    threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    return {
        "clients": clients,
        "requests": len(items),
        "errors": len(errors),
        "seconds": round(seconds, 2),
        "queries_per_s": round(len(items) / seconds, 1),
        **{f"latency_{k}": v for k, v in summary(latencies).items() if k != "n"},
    }


def measure(index: Path, texts: list[str], images: list[bytes], quick: bool) -> dict:
    server = Server(index)
    out: dict = {"index": str(index), "serve_to_ready_s": round(server.ready_s, 2)}
    try:
        connection = server.connection()
        info = connection.get("/info")
        about = next(iter(info["indexes"].values()))
        out["documents"] = about["documents"]
        out["model"] = about["model"]["name"]
        out["calibration"] = about["calibration"]["method"]

        def text_query(c, q, view="calibrated"):
            return c.get("/api/search?" + urlencode({"q": q, "k": 10, "calibration": view}))

        def image_query(c, data):
            return c.upload(data, {"k": 10})

        n_text, n_image = (100, 20) if quick else (300, 60)
        for q in texts[:20]:  # warm the connection and the page cache
            text_query(connection, q)
        out["text"] = summary(timed(lambda q: text_query(connection, q), texts[:n_text]))
        out["text_plain_view"] = summary(
            timed(lambda q: text_query(connection, q, "plain"), texts[n_text : 2 * n_text] or texts[:n_text])
        )
        out["image"] = summary(timed(lambda d: image_query(connection, d), images[:n_image]))
        out["server_took_ms_text_p50"] = round(
            statistics.median(text_query(connection, q)["took_ms"] for q in texts[:50]), 2
        )
        out["throughput_text"] = [
            throughput(server, text_query, (texts * 4)[: 400 if not quick else 200], clients) for clients in (1, 4, 16)
        ]
        out["throughput_image"] = [throughput(server, image_query, (images * 4)[:80], clients) for clients in (1, 4)]
        cli = []
        for q in texts[:5]:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "mixsearch", "search", str(index), q, "--url", server.url],
                check=True,
                capture_output=True,
            )
            cli.append(time.perf_counter() - start)
        out["cli_search_url_s"] = {
            "runs": len(cli),
            "median": round(statistics.median(cli), 3),
            "max": round(max(cli), 3),
        }
    finally:
        server.stop()
    return out


def cli_without_server(index: Path, query: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mixsearch", "search", str(index), query], check=True, capture_output=True)
    return round(time.perf_counter() - start, 2)


def flickr_items(data: Path) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """(image path, captions) of every photo in train and dev; dev's first captions as queries."""
    items, queries = [], []
    for split in ("train.jsonl", "dev.jsonl"):
        for line in (data / split).read_text().splitlines():
            record = json.loads(line)
            items.append((str(data / record["image"]), record["captions"]))
            if split == "dev.jsonl":
                queries.append(record["captions"][0])
    return items, queries


def big_index(data: Path, n_docs: int, work: Path) -> Path:
    """A mixed corpus of ``n_docs`` documents from Flickr8k, 1:1:1 text / image / image+text."""
    from mixsearch import Document, build_index

    folder = work / f"flickr8k-{n_docs}"
    if (folder / "manifest.json").is_file():
        return folder
    items, _ = flickr_items(data)
    docs = []
    for n in range(n_docs):
        image, captions = items[n % len(items)]
        caption = captions[0]  # one caption per photo: 7,000 texts to encode, not 35,000 (2 cores)
        kind = n % 3
        docs.append(
            Document(
                id=f"d{n}",
                text=caption if kind != 1 else None,
                image=Path(image) if kind != 0 else None,
            )
        )
    start = time.perf_counter()
    build_index(docs, folder, "mixclip-flickr8k", cache_dir=work / "cache", progress=True)
    print(f"built {folder} in {time.perf_counter() - start:.0f} s", flush=True)
    return folder


NOTES = [
    "The 100k index: 100,000 documents, 1:1:1 text / image / image+text, made of Flickr8k's 7,000 photos "
    "(train and dev) and the first caption of each, repeated under distinct ids (each item encoded once; "
    "exact search scores every one of the 100k vectors whatever they hold). Model mixclip-flickr8k (512-d).",
    "Text queries: Flickr8k dev captions, one per request; image queries: JPEG uploads of 60 Flickr8k photos.",
    "Queries are encoded one at a time per model (tokenizers are not thread-safe), so more clients add "
    "waiting, not throughput, once encoding and the 100k-vector scan fill the 2 cores.",
]


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        "# mixsearch serve: latency and throughput",
        "",
        f"Machine: {env['cpu']} ({env['nproc']} CPUs), RAM {env['ram']}, {env['platform']}; Python {env['python']}, "
        f"torch {env['torch']}, CUDA: {env.get('cuda') or 'none'}; mixsearch {env['mixsearch']}; {env['date']}. "
        "The machine is shared with other work, so numbers vary from run to run.",
        "",
        f"Command: `{result['command']}`. Server: `mixsearch serve INDEX` (1 torch thread, the default), "
        "client on the same machine over 127.0.0.1; latency is the client's wall clock per HTTP request "
        "(one keep-alive connection), k=10.",
        "",
        "| index | documents | serve→ready | text p50 / p95 | text (plain view) p50 / p95 | image upload p50 / p95 | "
        "`search --url` (new process) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["indexes"]:
        lines.append(
            f"| {r['name']} | {r['documents']['total']:,} | {r['serve_to_ready_s']} s | "
            f"{r['text']['p50_ms']} / {r['text']['p95_ms']} ms | "
            f"{r['text_plain_view']['p50_ms']} / {r['text_plain_view']['p95_ms']} ms | "
            f"{r['image']['p50_ms']} / {r['image']['p95_ms']} ms | {r['cli_search_url_s']['median']} s |"
        )
    lines += ["", "Throughput (queries/s; errors), by concurrent clients:", ""]
    lines += [
        "| index | query | clients | requests | queries/s | p50 / p95 | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["indexes"]:
        for kind in ("text", "image"):
            for t in r[f"throughput_{kind}"]:
                lines.append(
                    f"| {r['name']} | {kind} | {t['clients']} | {t['requests']} | {t['queries_per_s']} | "
                    f"{t['latency_p50_ms']} / {t['latency_p95_ms']} ms | {t['errors']} |"
                )
    if result.get("cli_without_server_s") is not None:
        lines += [
            "",
            f"For comparison, `mixsearch search` without a server (a fresh process loading Python, torch and "
            f"the model) took {result['cli_without_server_s']} s for one query on the demo index.",
        ]
    if result.get("notes"):
        lines += ["", *[f"- {n}" for n in result["notes"]]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flickr8k", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--work", type=Path, default=None, help="keeps the built indexes and cache between runs")
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mixsearch.bench import environment
    from mixsearch.demo import run_demo

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    run_demo(out=work / "demo")
    items, queries = flickr_items(args.flickr8k)
    images = [Path(image).read_bytes() for image, _ in items[-60:]]
    result: dict = {
        "command": "python benchmarks/bench_serve.py " + " ".join(sys.argv[1:]),
        "environment": environment(),
        "indexes": [],
        "notes": NOTES,
    }
    result["cli_without_server_s"] = cli_without_server(work / "demo" / "calibrated", queries[0])
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after each index, so a long run keeps what it measured
        (args.out / "serve.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.out / "serve.md").write_text(markdown(result))

    demo = measure(work / "demo" / "calibrated", queries, images, args.quick)
    result["indexes"].append({"name": "demo (calibrated)", **demo})
    save()
    big = big_index(args.flickr8k, args.docs, work)
    large = measure(big, queries, images, args.quick)
    result["indexes"].append({"name": f"flickr8k {args.docs // 1000}k mixed", **large})
    save()
    print(markdown(result))


if __name__ == "__main__":
    main()

"""``mixsearch serve`` as a user runs it: a child process on 127.0.0.1, loaded once, answering the
client (``search --url``), holding up under 50 concurrent clients, stopping cleanly on Ctrl-C.

Every server here listens on 127.0.0.1 only and ends by itself (see ``server_helpers``); every
request loop is bounded in count and time.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server needs the 'serve' extra: pip install 'mixsearch[serve]'")

from PIL import Image  # noqa: E402
from server_helpers import CliServer, build_served_index  # noqa: E402

import mixsearch as ms  # noqa: E402
from mixsearch.client import Client  # noqa: E402

CLIENTS, PER_CLIENT = 50, 20  # 1,000 queries
LOAD_DEADLINE_S = 240


@pytest.fixture(scope="module")
def index_folder(tiny_clip, tmp_path_factory):
    return build_served_index(tmp_path_factory.mktemp("live"), tiny_clip)


@pytest.fixture(scope="module")
def server(index_folder):
    live = CliServer(str(index_folder))
    yield live
    live.close()


def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_serves_what_the_python_api_answers(server, index_folder, tmp_path):
    client = Client(server.url)
    assert client.health().status == "ok"
    answer = client.search("dog on the beach", k=5)
    local = ms.open_index(index_folder).search("dog on the beach", k=5)
    assert [h.id for h in answer] == [h.id for h in local]
    assert [h.score for h in answer] == pytest.approx([h.score for h in local], abs=1e-6)
    image = tmp_path / "q.png"
    image.write_bytes(png(1))
    by_image = client.search_response(image=image, k=3, modality="text", calibration="plain")
    assert by_image.query.kind == "image" and by_image.calibration.method == "none"
    assert {h.modality for h in by_image.hits} == {"text"}
    assert client.search(image=image, k=3, modality="text", calibration="plain") == by_image.to_hits()
    with pytest.raises(ms.UsageError, match="k"):
        client.search("dog", k=0)
    with pytest.raises(ms.UsageError, match="no index named"):
        client.search("dog", index="elsewhere")


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``mixsearch`` in a fresh process; also reports whether torch was ever imported."""
    code = (
        "import sys\nfrom mixsearch.cli import app\n"
        "try:\n    app(sys.argv[1:], prog_name='mixsearch')\n"
        "except SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
        "print('torch loaded:', 'torch' in sys.modules, file=sys.stderr)\n"
        "print('server loaded:', any(m in sys.modules for m in ('fastapi', 'uvicorn', 'starlette')), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_search_url_asks_the_server(server, index_folder, tmp_path):
    done = _cli("search", str(index_folder), "dog on the beach", "-k", "3", "--json", "--url", server.url)
    assert done.returncode == 0, done.stderr
    hits = [json.loads(line) for line in done.stdout.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3] and all("id" in h and "score" in h for h in hits)
    assert "torch loaded: False" in done.stderr  # no model here: that is why it answers in milliseconds
    assert "server loaded: False" in done.stderr  # the response models are pydantic only
    image = tmp_path / "query.png"
    image.write_bytes(png(2))
    by_env = _cli("search", "index", str(image), "--modality", "text", env={"MIXSEARCH_URL": server.url})
    assert by_env.returncode == 0, by_env.stderr
    assert len(by_env.stdout.splitlines()) == 5 and " text " in by_env.stdout
    bad = _cli("search", "index", "dog", "--modality", "pictures", "--url", server.url)
    assert bad.returncode == 2 and "unknown modality" in bad.stderr
    nobody = _cli("search", "index", "dog", "--url", "http://127.0.0.1:9")
    assert nobody.returncode == 1 and "no mixsearch server answers" in nobody.stderr


@pytest.mark.slow
def test_load_1000_queries_from_50_clients(server, index_folder):
    rng = np.random.default_rng(0)
    words = "dog cat beach ball red blue runs jumps grass snow child water bike street man woman".split()
    texts = [" ".join(rng.choice(words, 5)) for _ in range(20)]
    kinds = [("text", t) for t in texts] + [("like", d) for d in ("i0", "i3", "m1", "t2")]
    kinds += [("image", png(s)) for s in range(6)]
    client = Client(server.url, timeout=30)

    def ask(kind):
        what, value = kind
        if what == "text":
            hits = client.search(value, k=10)
        elif what == "like":
            hits = client.search(like=value, k=10)
        else:
            answer = client._request("POST", "/api/search", *_multipart(value))  # the raw JSON, as sent
            return [(h["id"], h["score"]) for h in answer["hits"]]
        return [(h.id, h.score) for h in hits]

    serial = [ask(kind) for kind in kinds]
    deadline = time.monotonic() + LOAD_DEADLINE_S
    answers: dict[int, list] = {}
    errors: list[str] = []

    def worker(c: int) -> None:
        for j in range(PER_CLIENT):
            i = c * PER_CLIENT + j
            if time.monotonic() > deadline:
                errors.append(f"query {i}: past the deadline")
                return
            try:
                answers[i] = ask(kinds[i % len(kinds)])
            except Exception as err:  # every failure is counted, none stops the others
                errors.append(f"query {i}: {err}")

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.monotonic() + 5))
    seconds = time.perf_counter() - started
    assert not any(t.is_alive() for t in threads), "clients still running past the deadline"
    assert errors == []
    assert len(answers) == CLIENTS * PER_CLIENT == 1000
    different = [i for i, got in answers.items() if got != serial[i % len(kinds)]]
    assert different == [], f"{len(different)} answers differ from the serial ones"
    print(
        f"\nload test: 1000 queries from {CLIENTS} clients in {seconds:.1f} s "
        f"({1000 / seconds:.0f} queries/s), 0 errors"
    )


def _multipart(data: bytes) -> tuple[bytes, str]:
    from mixsearch.client import _multipart as build

    return build({"k": 10}, "image", "q.png", data)


@pytest.mark.slow
def test_token_and_ctrl_c(index_folder):
    live = CliServer(str(index_folder), env={"MIXSEARCH_TOKEN": "t0ken-for-tests"})
    try:
        deadline = time.monotonic() + 10
        while "needs the token" not in "".join(live.lines):  # printed just after the address
            assert time.monotonic() < deadline, "".join(live.lines)
            time.sleep(0.05)
        with pytest.raises(ms.MixsearchError, match="401"):
            Client(live.url).health()
        assert Client(live.url, token="t0ken-for-tests").health().status == "ok"
        done = _cli("search", "index", "dog", "--url", live.url, env={"MIXSEARCH_TOKEN": "t0ken-for-tests"})
        assert done.returncode == 0 and len(done.stdout.splitlines()) == 10, done.stderr
        assert live.interrupt() == 0
        out = "".join(live.lines)
        assert "stopped" in out and "Traceback" not in out
    finally:
        live.close()


#: A server whose every search sleeps a minute in its worker thread, as a slow `where` filter or a
#: long encoding would: patched in the server's own process, which a test's monkeypatch cannot reach.
SLOW_SERVER = """
import sys, time
from mixsearch.server import queries, run

def slow(*args, **kwargs):
    print("in flight", flush=True)
    time.sleep(60)

queries.run = slow
run.serve([sys.argv[1]], port=0, watch_interval=0, on_ready=lambda url: print("ready at", url, flush=True))
print("returned", flush=True)
"""


@pytest.mark.slow
def test_sigterm_stops_the_server_with_a_request_in_flight(index_folder):
    import signal
    import urllib.request

    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_SERVER, str(index_folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:  # bounded: the server prints its address or ends
            lines.append(line)
            if line.startswith("ready at"):
                break
        assert lines and lines[-1].startswith("ready at"), "".join(lines)
        url = lines[-1].split()[-1]

        def ask() -> None:
            try:
                urllib.request.urlopen(f"{url}/api/search?q=dog", timeout=90).read()
            except Exception:  # the connection is cut: expected
                pass

        threading.Thread(target=ask, daemon=True).start()
        assert process.stdout.readline().strip() == "in flight"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("the server still ran 20 s after SIGTERM, with a request in flight")
        seconds = time.monotonic() - started
        assert seconds < 8, f"SIGTERM took {seconds:.1f} s"  # a 3 s grace period, then the process ends
        assert process.returncode == 0
        assert "cut off" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

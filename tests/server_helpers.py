"""Helpers for the server tests: a small served index (with a hostile document text and a symlink
out of the corpus), and servers on 127.0.0.1 that stop by themselves."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from conftest import good_records, write_image

XSS = "<script>alert(1)</script>"
#: Every server a test starts is stopped by then at the latest.
SERVER_LIFETIME_S = 600


def build_served_index(root: Path, model: Path) -> Path:
    """A 14-document corpus (text, image, image+text, one hostile text, one image that is a symlink
    to a file outside the corpus), indexed with GR calibration fitted on it."""
    import mixsearch as ms

    rng = np.random.default_rng(7)
    corpus = root / "corpus"
    outside = root / "outside"
    outside.mkdir()
    records = good_records(corpus, rng)
    for i, record in enumerate(records):  # metadata to filter on with where=
        record.update(year=2010 + i, source="wiki" if i % 2 else "news")
    records.append({"id": "xss", "text": f"{XSS} dog beach"})
    write_image(outside / "secret.png", 99)
    os.symlink(outside / "secret.png", corpus / "img" / "link.png")
    records.append({"id": "escaped", "image": "img/link.png"})
    path = corpus / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    folder = root / "index"
    ms.build_index(path, folder, str(model), calibration=None, cache_dir=root / "cache", progress=False)
    return folder


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY: see server.run
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    return sock


class ThreadServer:
    """The app served by uvicorn in a thread of this process, on 127.0.0.1 and a free port."""

    def __init__(self, app):
        import uvicorn

        self.sock = free_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.timer = threading.Timer(SERVER_LIFETIME_S, self.stop)
        self.timer.daemon = True

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        self.timer.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True

    def __exit__(self, *exc) -> None:
        self.timer.cancel()
        self.stop()
        self.thread.join(timeout=15)
        self.sock.close()


class CliServer:
    """``mixsearch serve`` in a child process on 127.0.0.1, port chosen by the server; it ends
    by itself after SERVER_LIFETIME_S whatever happens to the test."""

    def __init__(self, *args: str, env: dict | None = None):
        command = [sys.executable, "-m", "mixsearch", "serve", *args, "--host", "127.0.0.1", "--port", "0"]
        if shutil.which("timeout"):
            command = ["timeout", "--foreground", "-s", "INT", "-k", "10", str(SERVER_LIFETIME_S), *command]
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self.url = self._wait_for_url(timeout=120)
        self.ready_s = time.perf_counter() - self.started
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("mixsearch serve ended before it was ready:\n" + "".join(self.lines))
            self.lines.append(line)
            found = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
            if found:
                return found.group(1)
        raise RuntimeError("mixsearch serve was not ready in time:\n" + "".join(self.lines))

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def interrupt(self, timeout: float = 30) -> int:
        """Ctrl-C, as a person would; returns the exit code."""
        # with `timeout --foreground` in front, it passes the signal on to the server, once
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

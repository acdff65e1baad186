"""A real Milvus server for the milvus index's tests: PyPI's ``milvus`` package (2.3.5 on Linux
x86-64, the last with a Linux wheel) ships Milvus standalone's own binary (Go and C++, etcd and
RocksMQ embedded), which runs here as a separate process on 127.0.0.1 ports. ``MIXSEARCH_MILVUS_URI``
names another server (a Milvus 2.5 standalone or cluster, say) to use instead."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: A server the tests start is killed by then at the latest, even if pytest itself is killed.
SERVER_LIFETIME_S = 1800
#: How long a start may take (unpacking the binary, etcd, the coordinators: about 12 s here).
START_TIMEOUT_S = 180
URI_ENV = "MIXSEARCH_MILVUS_URI"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _watchdog(pid: int) -> subprocess.Popen:
    """A process that kills ``pid`` when this one is gone or after ``SERVER_LIFETIME_S``."""
    code = (
        "import os, sys, time, signal\n"
        "parent, child, end = int(sys.argv[1]), int(sys.argv[2]), time.time() + float(sys.argv[3])\n"
        "while time.time() < end and os.getppid() == parent:\n"
        "    time.sleep(1)\n"
        "try:\n"
        "    os.kill(child, signal.SIGKILL)\n"
        "except ProcessLookupError:\n"
        "    pass\n"
    )
    args = [sys.executable, "-c", code, str(os.getpid()), str(pid), str(SERVER_LIFETIME_S)]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextmanager
def milvus_standalone(base: Path) -> Iterator[str]:
    """Start Milvus standalone with its data under ``base``, yield its uri, then stop it and remove
    ``base``. ``ImportError`` when the ``milvus`` package is not installed."""
    from milvus import MilvusServer  # PyPI `milvus`: the server binary, lzma-packed in the wheel

    server = MilvusServer(wait_for_started=False)
    server.set_base_dir(str(base))
    port = _free_port()
    server.config.set("proxy_port", port)  # the gRPC port clients use; the others it picks itself
    watchdog = None
    try:
        server.start()
        watchdog = _watchdog(server.server_proc.pid)
        server.wait_started(timeout=START_TIMEOUT_S * 1000)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
        shutil.rmtree(base, ignore_errors=True)

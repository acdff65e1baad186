"""Running the server: check the address and token, load every index and its model once, warm
up, listen, and serve until Ctrl-C (or SIGTERM), which stops it cleanly.

Stopping: Ctrl-C or SIGTERM closes the socket, waits up to ``GRACE_S`` seconds for requests in
flight, then cancels them. A request's work runs in a worker thread (an encoding, a ranking, a
``where`` filter), and a thread cannot be killed: when one is still running once the server has
stopped, the process ends without waiting for it (``os._exit``), and a watchdog ends it anyway
``GRACE_S + HARD_STOP_S`` seconds after the signal, whatever still runs.

Threads: torch gets ``threads`` (default 1) intra-op threads. One query's encoding is fastest
with one thread on a small machine (measured on 2 busy cores: 6-10 ms per text query with 1
thread, 15-175 ms with 2, as threads wait on each other), and concurrent requests then use the
other cores: encodings run one at a time per model, while ranking (numpy, which releases the GIL)
and HTTP handling of other requests run beside them.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError, require
from .uploads import MAX_PIXELS, MAX_UPLOAD_BYTES

log = logging.getLogger(__name__)

#: Host headers a loopback server answers to.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
#: Seconds a stop waits for requests in flight before cancelling them.
GRACE_S = 3
#: Seconds after that for the rest of the stop, before the watchdog ends the process.
HARD_STOP_S = 3


def check_address(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token."""
    from .auth import is_loopback

    if not is_loopback(host) and not token:
        raise UsageError(
            f"--host {host} accepts connections from other machines, so the server needs an access token: "
            "pass --token or set MIXSEARCH_TOKEN (e.g. MIXSEARCH_TOKEN=$(python -c "
            "'import secrets; print(secrets.token_urlsafe(24))'))"
        )


def serve(
    folders: Sequence[str | Path],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    threads: int = 1,
    device: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
    watch_interval: float = 2.0,
    access_log: bool = False,
    allowed_origins: Sequence[str] = (),
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve index folders over HTTP until interrupted. ``on_ready(url)`` is called once the
    indexes are loaded, the models warm and the socket listening. ``allowed_origins``: web
    origins whose pages may call the API from a browser (``create_app``).

    It owns the process while it serves (it must run in the main thread, for the signals): a stop
    that leaves requests running in worker threads ends the process (see the module's notes)."""
    require("fastapi", "serve", "mixsearch serve")
    uvicorn = require("uvicorn", "serve", "mixsearch serve")
    require("python_multipart", "serve", "image uploads")
    check_address(host, token)
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
    started = time.perf_counter()
    sock = _listen(host, port)  # fails early (port taken) before minutes of loading
    from . import queries
    from .app import create_app
    from .auth import is_loopback
    from .state import Registry

    registry = Registry(folders, device=device, warm_up=queries.warm_up)
    app = create_app(
        registry,
        token=token,
        max_upload_bytes=max_upload_bytes,
        max_pixels=max_pixels,
        watch_interval=watch_interval,
        # a loopback server answers only to loopback names: no DNS-rebinding page can reach it
        allowed_hosts=[*LOOPBACK_NAMES, host] if is_loopback(host) else None,
        allowed_origins=allowed_origins,
    )
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=GRACE_S,
        server_header=False,
    )
    server = uvicorn.Server(config)
    watchdog = _Watchdog(GRACE_S + HARD_STOP_S)
    uvicorn_handle_exit = server.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:  # uvicorn's signal handler, and the watchdog's start
        watchdog.arm()
        uvicorn_handle_exit(sig, frame)

    server.handle_exit = handle_exit
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    url = f"http://{shown}:{bound_port}"
    log.info("ready in %.1f s", time.perf_counter() - started)
    if on_ready is not None:
        on_ready(url)
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _interrupt)  # uvicorn re-raises the signal it stopped on: end as Ctrl-C does
    before = set(threading.enumerate())
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        registry.close()
        sock.close()
        watchdog.disarm()
    # request threads still busy (cancelled, but a thread cannot be stopped): the interpreter would
    # wait for each at exit, minutes for a slow one, so the process ends without them
    stuck = _still_running(before)
    if stuck:
        log.warning(
            "stopped; %d request(s) still running after the %d s grace period were cut off", len(stuck), GRACE_S
        )
        _exit_now(0)


def _still_running(before: set[threading.Thread], wait_s: float = 0.5) -> list[threading.Thread]:
    """Threads started since ``before`` that the interpreter would wait for at exit (not daemons)
    and that are still alive after up to ``wait_s`` (idle worker threads end by themselves)."""
    deadline = time.monotonic() + wait_s
    alive = []
    for thread in set(threading.enumerate()) - before:
        if thread.daemon:
            continue
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            alive.append(thread)
    return alive


class _Watchdog:
    """Ends the process ``seconds`` after ``arm`` unless ``disarm`` comes first: a stop must not
    hang on a request, the lifespan or a reload in progress."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        """Start counting (once: a second signal does not push the deadline back)."""
        if self._timer is None:
            self._timer = threading.Timer(self.seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        """The stop is done: no need to end the process."""
        if self._timer is not None:
            self._timer.cancel()

    def _fire(self) -> None:
        log.warning("the server did not stop within %.0f s of the signal: ending the process", self.seconds)
        _exit_now(0)


def _exit_now(code: int) -> None:
    """End the process at once (no waiting for threads), what was printed flushed first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port)."""
    from ..errors import InputError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every response waits ~40 ms on Nagle's algorithm and the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port} ({err.strerror or err})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock

"""``mixsearch.client.Client``'s connection: one keep-alive connection per thread, reopened when
the server has closed it. Against a raw socket server on 127.0.0.1 that counts its connections
(no model, no index: the search answers in ``test_server_live``)."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from mixsearch.client import Client
from mixsearch.errors import MixsearchError

HEALTH = json.dumps({"status": "ok", "indexes": {}}).encode()


class CountingServer:
    """Answers every GET with ``HEALTH``; ``keep_alive=False``: closes each connection after one
    answer without saying so (as a server does with an idle keep-alive connection)."""

    def __init__(self, keep_alive: bool):
        self.keep_alive, self.connections = keep_alive, 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(10)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                _, buffer = buffer.split(b"\r\n\r\n", 1)
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(HEALTH)
                conn.sendall(head + HEALTH)
                if not self.keep_alive:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(request, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY"):  # a proxy in the environment sends Client through urllib
        monkeypatch.delenv(name, raising=False)
    live = CountingServer(keep_alive=request.param)
    yield live
    live.close()


@pytest.mark.parametrize("server", [True], indirect=True)
def test_one_connection_per_thread(server):
    client = Client(server.url)
    for _ in range(5):
        assert client.health().status == "ok"
    assert server.connections == 1
    other = threading.Thread(target=lambda: [client.health() for _ in range(3)])
    other.start()
    other.join(10)
    assert server.connections == 2  # its own connection: http.client's are not thread-safe
    client.close()
    client.health()
    assert server.connections == 3


@pytest.mark.parametrize("server", [False], indirect=True)
def test_a_connection_the_server_closed_is_reopened(server):
    client = Client(server.url)
    for _ in range(4):
        assert client.health().status == "ok"
    assert server.connections == 4


def test_no_server_is_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MixsearchError, match="no mixsearch server answers"):
        Client(f"http://127.0.0.1:{port}").health()

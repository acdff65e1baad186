"""The access token: required on every request when the server has one (always when it listens
on anything but loopback).

A client sends ``Authorization: Bearer <token>``. A browser opens ``/?token=<token>`` once: the
server answers with a cookie (HttpOnly, SameSite=Strict) and a redirect to the same page without
the token, so the token leaves the address bar and the history, and thumbnails load with the cookie.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

COOKIE = "mixsearch_token"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class TokenAuth:
    """ASGI middleware: 401 for any request without the token."""

    def __init__(self, app: Any, token: str):
        self.app = app
        self.token = token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Let a request with the token through; log a browser in with ``?token=``; refuse the rest."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        bearer = headers.get("authorization", "")
        if bearer[:7].lower() == "bearer " and _same(bearer[7:].strip(), self.token):
            await self.app(scope, receive, send)
            return
        cookie = _cookie(headers.get("cookie", ""), COOKIE)
        if _same(None if cookie is None else unquote(cookie), self.token):
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = dict(query).get("token")
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == "/" and _same(given, self.token):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = scope.get("root_path", "") + "/" + (f"?{rest}" if rest else "")
            cookie = f"{COOKIE}={quote(self.token, safe='')}; Path=/; HttpOnly; SameSite=Strict"
            await _respond(send, 303, b"", [(b"location", location.encode()), (b"set-cookie", cookie.encode())])
            return
        await _unauthorized(scope, headers, send)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _unauthorized(scope: dict, headers: dict[str, str], send: Any) -> None:
    if scope["type"] != "http":
        await send({"type": "websocket.close", "code": 1008})
        return
    message = (
        "this server needs its access token: send 'Authorization: Bearer <token>' "
        "(mixsearch search --url ... --token, or MIXSEARCH_TOKEN), or open /?token=<token> once in a browser"
    )
    if "text/html" in headers.get("accept", ""):
        page = (
            "<!doctype html><meta charset=utf-8><title>mixsearch: token needed</title>"
            "<body style='font-family:system-ui;margin:3em;max-width:40em'><h1>Token needed</h1>"
            "<p>This mixsearch server asks for its access token. Open <code>/?token=YOUR_TOKEN</code> "
            "once; your browser then keeps it in a cookie.</p></body>"
        )
        await _respond(send, 401, page.encode(), [(b"content-type", b"text/html; charset=utf-8")])
        return
    await _respond(
        send,
        401,
        json.dumps({"detail": message}).encode(),
        [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
    )


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})

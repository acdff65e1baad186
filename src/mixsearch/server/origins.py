"""Cross-site requests: a page on another site must not make a visitor's browser search (or reload)
on this server, which on loopback has no token to stop it (cross-site request forgery).

Browsers say where a request comes from: ``Sec-Fetch-Site`` (``same-origin``, ``same-site``,
``cross-site``, or ``none`` for one the user typed) and, on every POST and every cross-origin
fetch, ``Origin``. A request whose headers name another origin is refused with 403, unless that
origin was allowed (``--allow-origin``). Requests with neither header (curl, scripts,
``mixsearch.client``) are not a browser's on a page's behalf, and pass. So do the static assets,
and a top-level GET navigation (a link or a bookmark opening the page), which a page could as well
make by sending the user there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

#: Paths any site may load: the page's and the API docs' own files, which do nothing.
STATIC_PREFIXES = ("/static/", "/docs/static/", "/favicon.ico")
#: Pages a link from elsewhere may open (a GET navigation of the whole window, never a frame).
PAGES = ("/", "/docs", "/redoc")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origin_of(url: str) -> str:
    """``scheme://host:port`` of a URL or an ``Origin`` header (default ports written out, host
    lower-cased), so two spellings of one origin compare equal; "" when it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return ""
    if not parts.scheme or not parts.hostname:
        return ""
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{host}:{port or DEFAULT_PORTS.get(parts.scheme.lower(), 0)}"


class CrossSiteGuard:
    """ASGI middleware: 403 ``{"detail": ...}`` for a browser's request on behalf of another site.

    ``Sec-Fetch-Site``, where the browser sends it, decides: ``same-origin`` and ``none`` pass,
    ``same-site`` and ``cross-site`` only with an allowed ``Origin`` or as a navigation to a page.
    Without it (an older browser) the ``Origin`` must be the server's own (the request's scheme and
    ``Host``; behind a proxy that rewrites either, allow the public origin) or an allowed one.
    """

    def __init__(self, app: Any, allowed_origins: Iterable[str] = ()):
        self.app = app
        self.allowed = {origin_of(o) for o in allowed_origins} - {""}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Pass the request on, or refuse it."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        reason = self.refusal(scope)
        if reason is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"detail": reason}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, scope: dict) -> str | None:
        """Why this request is refused, or None to let it through."""
        path = scope.get("path", "")
        if path.startswith(STATIC_PREFIXES):
            return None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        site = headers.get("sec-fetch-site", "").strip().lower()
        origin = headers.get("origin")
        given = None if origin is None else origin_of(origin)  # "null" (a sandboxed frame, a file): ""
        if site in ("same-origin", "none"):
            return None  # the browser's own word (no page can set it): this server's page, or typed
        if site:  # same-site (another port of this machine is another site's page too) or cross-site
            if _navigation(scope, headers, path) or given in self.allowed:
                return None
            return (
                f"cross-site request refused (Sec-Fetch-Site: {site}): open the page on this server itself, "
                "or start it with --allow-origin ORIGIN to let a page elsewhere use it"
            )
        if origin is None:
            return None  # not a browser (curl, scripts, mixsearch.client), or one too old to say
        own = origin_of(f"{scope.get('scheme', 'http')}://{headers.get('host', '')}")
        if given and (given == own or given in self.allowed):
            return None
        return (
            f"cross-site request refused: this server does not answer pages from {origin.strip()!r} "
            "(start it with --allow-origin ORIGIN to let a page there use it)"
        )


def _navigation(scope: dict, headers: dict[str, str], path: str) -> bool:
    """A link or bookmark opening one of the pages in the whole window (not a frame, not a POST)."""
    return (
        scope.get("method") in ("GET", "HEAD")
        and path in PAGES
        and headers.get("sec-fetch-mode") == "navigate"
        and headers.get("sec-fetch-dest", "document") == "document"
    )


__all__ = ["CrossSiteGuard", "origin_of"]

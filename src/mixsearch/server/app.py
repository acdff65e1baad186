"""The FastAPI application: the routers (``routes``), the error mapping and the middleware, over a
``Registry`` of opened indexes. ``create_app`` builds it; ``mixsearch serve`` runs it with uvicorn.

Endpoints (OpenAPI at ``/docs``; every JSON answer has its model in ``schemas``):

- ``GET /health``, ``GET /info``, ``POST /reload`` (``routes.admin``)
- ``GET /api/search`` (text, or ``like`` a document), ``POST /api/search`` (multipart: an image
  upload, with or without text), ``POST /api/search/batch`` (JSON: many queries) (``routes.search``)
- ``GET /api/documents/{id}``, ``GET /api/media/{id}`` (the original file),
  ``GET /api/thumbnail/{id}?size=256`` (``routes.documents``)
- ``GET /`` and ``POST /``: the page (``routes.page``)

Routes take the server's state through ``deps`` (``Depends`` on ``app.state``), not closures.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..errors import MixsearchError, UsageError
from . import docs, queries
from .auth import TokenAuth
from .deps import Settings
from .errors import status_of
from .origins import CrossSiteGuard
from .page import Page
from .redact import redact_text
from .routes import ROUTERS
from .state import VIEWS, Registry
from .uploads import MAX_PIXELS, MAX_UPLOAD_BYTES, BodyLimit

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
#: Headers on every response: no sniffing, no framing, no referrer to other sites.
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" with the page's own
    # form posts, which then look like a sandboxed page's; other sites still get no referrer
    "Referrer-Policy": "same-origin",
}


def create_app(
    indexes: Registry | Sequence[str | Path],
    *,
    token: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
    watch_interval: float = 0.0,
    allowed_hosts: Sequence[str] | None = None,
    allowed_origins: Sequence[str] = (),
) -> FastAPI:
    """The server application over opened indexes (a ``Registry``, or folders to open now).

    ``token``: when set, every request must carry it (see ``auth``). ``watch_interval``: seconds
    between checks for indexes changed on disk (0: only on ``POST /reload``). ``allowed_hosts``:
    the Host headers accepted (others get 400), e.g. only loopback names for a loopback server, so
    a web page cannot reach it through DNS rebinding; None accepts any. ``allowed_origins``: web
    origins (``https://app.example.org``) whose pages may use the API from a browser; requests a
    browser makes for any other site's page get 403 (see ``origins``).
    """
    registry = indexes if isinstance(indexes, Registry) else Registry(indexes, warm_up=queries.warm_up)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        registry.watch(watch_interval)
        yield
        registry.close()

    app = FastAPI(
        title="mixsearch",
        version=__version__,
        description="Mixed-modality search (text, image, image+text) with GR-CLIP modality-gap calibration.",
        lifespan=lifespan,
        **docs.offline_docs_app_args(),
    )
    app.state.registry = registry
    app.state.settings = Settings(max_upload_bytes=max_upload_bytes, max_pixels=max_pixels)
    app.state.page = Page(HERE / "templates")
    for router in ROUTERS:
        app.include_router(router)
    docs.add_offline_docs(app)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(MixsearchError, mixsearch_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)

    _add_middleware(app, token, max_upload_bytes, allowed_hosts, allowed_origins)
    return app


def _add_middleware(
    app: FastAPI,
    token: str | None,
    max_upload_bytes: int,
    allowed_hosts: Sequence[str] | None,
    allowed_origins: Sequence[str],
) -> None:
    """The middleware, outermost last: the Host, where a browser's request comes from, the token,
    the body limit, the safe headers."""
    # outermost last: the Host, then where a browser's request comes from, the token, the body limit
    app.add_middleware(SafeHeaders)
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    if token:
        app.add_middleware(TokenAuth, token=token)
    if allowed_origins:  # outside the token check: a CORS preflight carries no token
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=[o.strip().rstrip("/") for o in allowed_origins],
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(CrossSiteGuard, allowed_origins=allowed_origins)
    if allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))


# -- errors: one place (statuses in ``errors``; the page answers its own as a page) ----------------


async def mixsearch_error(request: Request, err: Exception) -> Response:
    """A mixsearch error: its status by class, ``{"detail": message}`` (files by name: the log
    keeps the server's paths, the answer does not)."""
    status = status_of(err)
    if status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, err)
    message = redact_text(str(err))
    if _wants_page(request):
        return _error_page(request, message, status)
    return JSONResponse({"detail": message}, status_code=status)


async def validation_error(request: Request, err: Exception) -> Response:
    """A request that does not validate: 422, one message naming each bad field, and the list."""
    assert isinstance(err, RequestValidationError)
    errors = err.errors()
    message = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'request'}: {e['msg']}" for e in errors)
    if _wants_page(request):
        return _error_page(request, message, 422)
    safe = [{key: e[key] for key in ("loc", "msg", "type") if key in e} for e in errors]
    return JSONResponse({"detail": message, "errors": safe}, status_code=422)


async def http_error(request: Request, err: Exception) -> Response:
    """Starlette's own errors (404 for an unknown path, 405...) in the same body."""
    assert isinstance(err, StarletteHTTPException)
    if _wants_page(request) and err.status_code != 404:
        return _error_page(request, str(err.detail), err.status_code)
    return JSONResponse({"detail": err.detail}, status_code=err.status_code, headers=err.headers)


def _error_page(request: Request, message: str, status: int) -> Response:
    return request.app.state.page.error(request, request.app.state.registry, message, status)


def _wants_page(request: Request) -> bool:
    return request.url.path == "/"


class SafeHeaders:
    """ASGI middleware: ``SAFE_HEADERS`` on every response that does not set them itself."""

    def __init__(self, app: Any):
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in SAFE_HEADERS.items()]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Pass the request on; add the headers to its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message = {
                    **message,
                    "headers": [*message.get("headers", []), *(h for h in self.headers if h[0] not in present)],
                }
            await send(message)

        await self.app(scope, receive, send_with_headers)


__all__ = ["VIEWS", "UsageError", "create_app"]

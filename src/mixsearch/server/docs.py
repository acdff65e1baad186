"""The API docs, ``/docs`` (Swagger UI) and ``/redoc``, from files in a package instead of a CDN,
so they work on a machine without internet (FastAPI's own pages load their scripts from a CDN,
and are blank offline).

The scripts come with ``fastapi-offline`` (in the ``serve`` extra; a current Swagger UI 5 and
ReDoc 2: FastAPI writes OpenAPI 3.1, which Swagger UI 4 cannot show), served under
``/docs/static``. Each page has a Content-Security-Policy that allows the server's own files and
nothing else: no CDN, and no inline script but the one Swagger UI's page starts with (by hash).
Without ``fastapi-offline`` the app keeps FastAPI's CDN pages.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger(__name__)

#: Where the docs' scripts and styles are served.
ASSETS = "/docs/static"
REDIRECT = "/docs/oauth2-redirect"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def assets_folder() -> Path | None:
    """The folder of Swagger UI's and ReDoc's files (``fastapi-offline``'s), or None without it."""
    try:
        from importlib.resources import files

        folder = Path(str(files("fastapi_offline") / "static"))
    except (ImportError, TypeError):  # not installed
        return None
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def offline_docs_app_args() -> dict:
    """``FastAPI(...)`` arguments: FastAPI's own (CDN) doc pages off when ``add_offline_docs`` can
    serve them from the package instead."""
    return {"docs_url": None, "redoc_url": None} if assets_folder() is not None else {}


def csp(html: str, worker: bool = False) -> str:
    """The docs pages' Content-Security-Policy: the server's own files, the page's inline scripts
    by hash (Swagger UI's start), inline styles (both UIs set them), data: images (their icons)."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(html)
    )
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' {hashes}".strip(),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            *(["worker-src 'self' blob:"] if worker else []),
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


router = APIRouter(include_in_schema=False)


def add_offline_docs(app: FastAPI) -> bool:
    """Serve ``/docs`` and ``/redoc`` from the package's files; False (nothing added) without them."""
    folder = assets_folder()
    if folder is None:
        log.info("fastapi-offline is not installed: /docs loads Swagger UI from its CDN")
        return False
    app.mount(ASSETS, StaticFiles(directory=folder), name="docs-static")
    app.include_router(router)
    return True


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over the app's OpenAPI."""
    app, root = request.app, request.scope.get("root_path", "")
    page = get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - API docs",
        oauth2_redirect_url=f"{root}{REDIRECT}",
        swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}/static/favicon.svg",
        swagger_ui_parameters=app.swagger_ui_parameters,
    )
    return _with_csp(page)


@router.get(REDIRECT)
def swagger_ui_redirect() -> HTMLResponse:
    """Swagger UI's OAuth2 redirect page (FastAPI's, as its own docs have it)."""
    return _with_csp(get_swagger_ui_oauth2_redirect_html())


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """ReDoc over the app's OpenAPI."""
    app, root = request.app, request.scope.get("root_path", "")
    page = get_redoc_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - API docs",
        redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
        redoc_favicon_url=f"{root}/static/favicon.svg",
        with_google_fonts=False,
    )
    return _with_csp(page, worker=True)


def _with_csp(page: HTMLResponse, worker: bool = False) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = csp(bytes(page.body).decode(), worker=worker)
    return page


__all__ = ["ASSETS", "add_offline_docs", "assets_folder", "csp"]

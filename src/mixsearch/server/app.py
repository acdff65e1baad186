"""The FastAPI application: the REST API, the web page, and the error mapping, over a ``Registry``
of opened indexes. ``create_app`` builds it; ``mixsearch serve`` runs it with uvicorn.

Endpoints (OpenAPI at ``/docs``):

- ``GET /health``, ``GET /info``, ``POST /reload``
- ``GET /api/search`` (text, or ``like`` a document), ``POST /api/search`` (multipart: an image
  upload, with or without text), ``POST /api/search/batch`` (JSON: many queries)
- ``GET /api/documents/{id}``, ``GET /api/media/{id}`` (the original file),
  ``GET /api/thumbnail/{id}?size=256``
- ``GET /`` and ``POST /``: the page
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Union

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import MixsearchError, UsageError
from ..types import Hit
from . import media, queries
from .auth import TokenAuth
from .errors import status_of
from .page import Page
from .queries import MAX_BATCH, MAX_K
from .state import VIEWS, Registry, Served
from .uploads import MAX_PIXELS, MAX_UPLOAD_BYTES, BodyLimit, decode_image

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
#: Headers on every response: no sniffing, no framing, no referrer leaks.
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

INDEX_PARAM = Query(None, description="Which served index (its name in /info); the first one when absent.")
K_PARAM = Query(10, ge=1, le=MAX_K, description="Number of hits.")
WHERE_PARAM = Query(
    None,
    description="An SQL condition on the documents' metadata fields, e.g. year >= 2020 AND source = 'wiki'.",
    max_length=2_000,
)
MODALITY_PARAM = Query(
    None,
    description="Only documents of this modality: text, image, multimodal (or image+text), audio, video; "
    "several separated by commas.",
)
MIN_RELEVANCE_DESCRIPTION = (
    "Drop hits whose estimated relevance (0-1, from the calibration's relevance map) is below this."
)
CALIBRATION_PARAM = Query(
    "calibrated",
    pattern="^(calibrated|plain)$",
    description="'calibrated': the index as stored (GR-calibrated unless built plain); "
    "'plain': plain CLIP from the same stored raw embeddings.",
)


class BatchQuery(BaseModel):
    """One query of a batch: a text, a document to find more like (``like``), or both."""

    text: Union[str, None] = Field(None, description="Query text.")
    like: Union[str, None] = Field(None, description="A document id: its stored image (or text) is the query.")


class BatchRequest(BaseModel):
    """Many queries, ranked under one view."""

    queries: list[Union[str, BatchQuery]] = Field(
        ..., min_length=1, max_length=MAX_BATCH, description="Texts, or objects with text and/or like."
    )
    k: int = Field(10, ge=1, le=MAX_K)
    modality: Union[str, None] = None
    calibration: str = Field("calibrated", pattern="^(calibrated|plain)$")
    index: Union[str, None] = None
    where: Union[str, None] = Field(None, max_length=2_000, description="SQL condition on metadata fields.")


def create_app(
    indexes: Registry | Sequence[str | Path],
    *,
    token: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
    watch_interval: float = 0.0,
    allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """The server application over opened indexes (a ``Registry``, or folders to open now).

    ``token``: when set, every request must carry it (see ``auth``). ``watch_interval``: seconds
    between checks for indexes changed on disk (0: only on ``POST /reload``). ``allowed_hosts``:
    the Host headers accepted (others get 400), e.g. only loopback names for a loopback server, so
    a web page cannot reach it through DNS rebinding; None accepts any.
    """
    registry = indexes if isinstance(indexes, Registry) else Registry(indexes)

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
    )
    app.state.registry = registry
    page = Page(HERE / "templates")

    # -- errors: one place ---------------------------------------------------------------------

    @app.exception_handler(MixsearchError)
    async def mixsearch_error(request: Request, err: MixsearchError) -> Response:
        status = status_of(err)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, err)
        if _wants_page(request):
            return page.error(request, registry, str(err), status)
        return JSONResponse({"detail": str(err)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> Response:
        errors = err.errors()
        message = "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'request'}: {e['msg']}" for e in errors
        )
        if _wants_page(request):
            return page.error(request, registry, message, 422)
        safe = [{key: e[key] for key in ("loc", "msg", "type") if key in e} for e in errors]
        return JSONResponse({"detail": message, "errors": safe}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        if _wants_page(request) and err.status_code != 404:
            return page.error(request, registry, str(err.detail), err.status_code)
        return JSONResponse({"detail": err.detail}, status_code=err.status_code, headers=err.headers)

    # -- status ---------------------------------------------------------------------------------

    @app.get("/health", tags=["status"], summary="Whether the server is up, and each index's state")
    def health() -> dict:
        return {
            "status": "ok" if not registry.errors else "degraded",
            "indexes": {
                name: {
                    "documents": len(s.index),
                    "generation": s.index.manifest.generation,
                    **_error(registry, name),
                }
                for name, s in registry.served.items()
            },
        }

    @app.get("/info", tags=["status"], summary="Model, calibration and its provenance, documents per modality")
    def info() -> dict:
        return {
            "mixsearch": __version__,
            "default": registry.default,
            "indexes": {name: _info(s) for name, s in registry.served.items()},
        }

    @app.post("/reload", tags=["status"], summary="Reopen every index changed on disk (rebuilt, recalibrated)")
    def reload(force: bool = Query(False, description="Reopen every index, changed or not.")) -> dict:
        return {"indexes": registry.reload(force=force)}

    # -- search ---------------------------------------------------------------------------------

    @app.get("/api/search", tags=["search"], summary="Search with a text, or for documents like a document")
    def search_get(
        request: Request,
        q: Union[str, None] = Query(None, description="Query text.", max_length=10_000),
        like: Union[str, None] = Query(None, description="A document id: search with its stored image (or text)."),
        k: int = K_PARAM,
        modality: Union[str, None] = MODALITY_PARAM,
        calibration: str = CALIBRATION_PARAM,
        index: Union[str, None] = INDEX_PARAM,
        where: Union[str, None] = WHERE_PARAM,
        min_relevance: Union[float, None] = Query(None, ge=0, le=1, description=MIN_RELEVANCE_DESCRIPTION),
    ) -> dict:
        query = queries.Query(text=q, like=like)
        return _search(request, registry.get(index), query, k, modality, calibration, where, min_relevance)

    @app.post("/api/search", tags=["search"], summary="Search with an uploaded image, alone or with a text")
    def search_post(
        request: Request,
        image: Union[UploadFile, None] = File(None, description="Query image (JPEG, PNG, GIF, WebP, BMP, TIFF)."),
        q: Union[str, None] = Form(
            None, description="Query text (with an image: an image+text query).", max_length=10_000
        ),
        like: Union[str, None] = Form(None, description="A document id, instead of an uploaded image."),
        k: int = Form(10, ge=1, le=MAX_K),
        modality: Union[str, None] = Form(None),
        calibration: str = Form("calibrated", pattern="^(calibrated|plain)$"),
        index: Union[str, None] = Form(None),
        where: Union[str, None] = Form(None, max_length=2_000),
        min_relevance: Union[float, None] = Form(None, ge=0, le=1, description=MIN_RELEVANCE_DESCRIPTION),
    ) -> dict:
        served = registry.get(index)
        query = queries.Query(text=q, like=like, **_upload(image, max_pixels))
        return _search(request, served, query, k, modality, calibration, where, min_relevance)

    @app.post("/api/search/batch", tags=["search"], summary="Many queries at once (texts and/or like=document id)")
    def search_batch(request: Request, body: BatchRequest) -> dict:
        served = registry.get(body.index)
        asked = [
            queries.Query(text=q) if isinstance(q, str) else queries.Query(text=q.text, like=q.like)
            for q in body.queries
        ]
        modality = queries.parse_modality(body.modality)
        results, took = queries.run_batch(
            served, asked, k=body.k, modality=modality, view=body.calibration, where=body.where
        )
        root = request.scope.get("root_path", "")
        return {
            **_about(served, body.calibration),
            "k": body.k,
            "modality": modality,
            "where": body.where,
            "took_ms": round(took, 2),
            "results": [
                {"query": q.describe(), "hits": [queries.hit_json(h, served, root) for h in hits]}
                for q, hits in zip(asked, results)
            ],
        }

    # -- documents and their media ----------------------------------------------------------------

    @app.get("/api/documents/{doc_id:path}", tags=["documents"], summary="A document by id")
    def document(request: Request, doc_id: str, index: Union[str, None] = INDEX_PARAM) -> dict:
        served = registry.get(index)
        doc = served.document(doc_id)
        row = served.row(doc_id)
        hit = queries.hit_json(
            Hit(0, doc_id, 0.0, doc["modality"], doc.get("text"), doc.get("image"), doc.get("audio"), doc.get("video")),
            served,
            request.scope.get("root_path", ""),
        )
        hit.pop("rank"), hit.pop("score")
        return {"index": served.name, "row": row, **hit}

    @app.get("/api/media/{doc_id:path}", tags=["documents"], summary="A document's original image (or other media)")
    def media_original(
        doc_id: str,
        index: Union[str, None] = INDEX_PARAM,
        modality: str = Query("image", pattern="^(image|audio|video)$"),
    ) -> FileResponse:
        served = registry.get(index)
        path = media.media_file(served, doc_id, modality)
        return FileResponse(
            path,
            media_type=media.content_type(served, doc_id, modality),
            headers={"Content-Security-Policy": "sandbox", "Cache-Control": "private, max-age=300"},
        )

    @app.get("/api/thumbnail/{doc_id:path}", tags=["documents"], summary="A JPEG thumbnail of a document's image")
    def media_thumbnail(
        doc_id: str,
        index: Union[str, None] = INDEX_PARAM,
        size: int = Query(256, ge=16, le=1024, description="Longest side, in pixels."),
    ) -> Response:
        data = media.thumbnail(registry.get(index), doc_id, size)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})

    # -- the page -------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request) -> Response:
        return page.search(request, registry, dict(request.query_params), None)

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    def home_upload(
        request: Request,
        image: Union[UploadFile, None] = File(None),
        q: Union[str, None] = Form(None, max_length=10_000),
        k: Union[str, None] = Form(None),
        modality: Union[str, None] = Form(None),
        view: Union[str, None] = Form(None),
        index: Union[str, None] = Form(None),
    ) -> Response:
        params = {key: v for key, v in dict(q=q, k=k, modality=modality, view=view, index=index).items() if v}
        upload = _upload(image, max_pixels)
        return page.search(request, registry, params, upload)

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.state.page = page

    # outermost last: the token is checked before anything else, then the body limit
    app.add_middleware(SafeHeaders)
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    if token:
        app.add_middleware(TokenAuth, token=token)
    if allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    return app


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


def _search(
    request: Request,
    served: Served,
    query: queries.Query,
    k: int,
    modality: str | None,
    view: str,
    where: str | None = None,
    min_relevance: float | None = None,
) -> dict:
    filter_ = queries.parse_modality(modality)
    hits, took = queries.run(
        served, query, k=k, modality=filter_, views=[view], where=where, min_relevance=min_relevance
    )
    root = request.scope.get("root_path", "")
    return {
        **_about(served, view),
        "query": query.describe(),
        "k": k,
        "modality": filter_,
        "where": where,
        **({"min_relevance": min_relevance} if min_relevance is not None else {}),
        "took_ms": round(took, 2),
        "hits": [queries.hit_json(h, served, root) for h in hits[view]],
    }


def _about(served: Served, view: str) -> dict:
    return {
        "index": served.name,
        "model": served.index.model.to_dict(),
        "calibration": queries.calibration_info(served, view),
    }


def _info(served: Served) -> dict:
    manifest = served.index.manifest
    build = manifest.build or {}
    return {
        "model": served.index.model.to_dict(),
        "calibration": queries.calibration_info(served, "calibrated"),
        "views": {v: queries.calibration_info(served, v)["method"] for v in served.views()},
        "documents": served.counts(),
        "generation": manifest.generation,
        "created": manifest.created,
        "skipped": len(build.get("skipped_ids", [])),
    }


def _error(registry: Registry, name: str) -> dict:
    return {"reload_error": registry.errors[name]} if name in registry.errors else {}


def _upload(image: UploadFile | None, max_pixels: int) -> dict:
    """An uploaded file's decoded image (nothing when no file was chosen)."""
    if image is None or not image.filename and not image.size:
        return {}
    data = image.file.read()
    if not data and not image.filename:
        return {}
    name = Path(image.filename or "upload").name
    return {"image": decode_image(data, name=name, max_pixels=max_pixels), "image_name": name}


def _wants_page(request: Request) -> bool:
    return request.url.path == "/"


__all__ = ["VIEWS", "UsageError", "create_app"]

"""Documents and their media, by document id only (never by path): ``GET /api/documents/{id}``,
``GET /api/media/{id}`` (the original file), ``GET /api/thumbnail/{id}?size=256``."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response

from ...types import Hit
from .. import media, queries
from ..deps import RootDep, ServedDep
from ..schemas import ERRORS, DocumentResponse
from ..wire import answer

router = APIRouter(prefix="/api", tags=["documents"], responses=ERRORS)


@router.get("/documents/{doc_id:path}", response_model=DocumentResponse, summary="A document by id")
def document(served: ServedDep, root: RootDep, doc_id: str) -> Response:
    """A document's fields and media URLs (media as file names, never the server's paths)."""
    doc = served.document(doc_id)
    row = served.row(doc_id)
    hit = queries.hit_json(
        Hit(0, doc_id, 0.0, doc["modality"], doc.get("text"), doc.get("image"), doc.get("audio"), doc.get("video")),
        served,
        root,
    )
    hit.pop("rank"), hit.pop("score")
    return answer(DocumentResponse.model_validate({"index": served.name, "row": row, **hit}))


@router.get(
    "/media/{doc_id:path}",
    response_class=FileResponse,
    summary="A document's original image (or other media)",
    responses={200: {"description": "The file, with its recorded type", "content": {"application/octet-stream": {}}}},
)
def media_original(
    served: ServedDep, doc_id: str, modality: str = Query("image", pattern="^(image|audio|video)$")
) -> FileResponse:
    """The recorded file, only if it still lies inside the corpus it was indexed from."""
    path = media.media_file(served, doc_id, modality)
    return FileResponse(
        path,
        media_type=media.content_type(served, doc_id, modality),
        headers={"Content-Security-Policy": "sandbox", "Cache-Control": "private, max-age=300"},
    )


@router.get(
    "/thumbnail/{doc_id:path}",
    response_class=Response,
    summary="A JPEG thumbnail of a document's image",
    responses={200: {"description": "A JPEG image", "content": {"image/jpeg": {}}}},
)
def media_thumbnail(
    served: ServedDep, doc_id: str, size: int = Query(256, ge=16, le=1024, description="Longest side, in pixels.")
) -> Response:
    """A JPEG of the document's image, at most ``size`` pixels on its longest side."""
    data = media.thumbnail(served, doc_id, size)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})

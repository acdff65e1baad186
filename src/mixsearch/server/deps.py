"""What routes get through FastAPI's ``Depends``: the server's state (kept on ``app.state`` by
``create_app``: the registry of served indexes, the settings, the page renderer), the index a
request names, an uploaded image decoded, and the query parameters several routes share.

The state getters are ``async def`` on purpose: they only look things up (no I/O, no lock a
reload holds), and FastAPI runs a plain ``def`` dependency in its threadpool: one thread hop per
dependency per request (measured ~0.3 ms each on 2 busy cores, torch loaded)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, UploadFile

from .page import Page
from .queries import MAX_K
from .state import Registry, Served
from .uploads import MAX_PIXELS, MAX_UPLOAD_BYTES, decode_image


@dataclass(frozen=True)
class Settings:
    """A server's limits, as ``create_app`` was given them."""

    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_PIXELS


async def get_registry(request: Request) -> Registry:
    """The served indexes."""
    return request.app.state.registry


async def get_settings(request: Request) -> Settings:
    """The server's limits."""
    return request.app.state.settings


async def get_page(request: Request) -> Page:
    """The web page's renderer."""
    return request.app.state.page


async def get_root(request: Request) -> str:
    """The path the app is mounted under (behind a proxy), for the URLs in answers."""
    return request.scope.get("root_path", "")


INDEX_PARAM = Query(None, description="Which served index (its name in /info); the first one when absent.")


async def get_served(registry: Annotated[Registry, Depends(get_registry)], index: str | None = INDEX_PARAM) -> Served:
    """The index a request names with ``?index=`` (the first served one when absent)."""
    return registry.get(index)


def no_form_body(request: Request) -> None:
    """Refuse a body a plain HTML form could send (415): with no body or a JSON one, a request
    from another site's page needs the browser's CORS preflight, which this server never grants,
    so such a route is no target for a forged form POST."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise HTTPException(
            415, f"this request takes no body or a JSON one (Content-Type: application/json), not {content_type!r}"
        )


RegistryDep = Annotated[Registry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PageDep = Annotated[Page, Depends(get_page)]
RootDep = Annotated[str, Depends(get_root)]
ServedDep = Annotated[Served, Depends(get_served)]

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
#: What ``calibration=`` takes: ``calibrated``, or ``none`` (plain CLIP; ``plain`` is its old name, still taken).
CALIBRATION_PATTERN = "^(calibrated|none|plain)$"
CALIBRATION_PARAM = Query(
    "calibrated",
    pattern=CALIBRATION_PATTERN,
    description="'calibrated': the index as stored (GR-calibrated unless built plain); "
    "'none': plain CLIP from the same stored raw embeddings ('plain' is taken too).",
)


def read_upload(image: UploadFile | None, settings: Settings) -> dict:
    """An uploaded file's decoded image (nothing when no file was chosen)."""
    if image is None or not image.filename and not image.size:
        return {}
    data = image.file.read()
    if not data and not image.filename:
        return {}
    name = Path(image.filename or "upload").name
    return {"image": decode_image(data, name=name, max_pixels=settings.max_pixels), "image_name": name}

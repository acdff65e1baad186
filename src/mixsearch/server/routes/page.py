"""The web page: ``GET /`` (the form, and results for ``?q=`` or ``?like=``), ``POST /`` (an
uploaded image). Left out of the OpenAPI: it answers HTML."""

from __future__ import annotations

from typing import Union

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from ..deps import PageDep, RegistryDep, SettingsDep, read_upload

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, registry: RegistryDep, page: PageDep) -> Response:
    """The search page, with results for ``q`` or ``like``."""
    return page.search(request, registry, dict(request.query_params), None)


@router.post("/", response_class=HTMLResponse)
def home_upload(
    request: Request,
    registry: RegistryDep,
    page: PageDep,
    settings: SettingsDep,
    image: Union[UploadFile, None] = File(None),
    q: Union[str, None] = Form(None, max_length=10_000),
    k: Union[str, None] = Form(None),
    modality: Union[str, None] = Form(None),
    view: Union[str, None] = Form(None),
    index: Union[str, None] = Form(None),
    where: Union[str, None] = Form(None, max_length=2_000),
) -> Response:
    """The search page for an uploaded image (with or without text)."""
    given = dict(q=q, k=k, modality=modality, view=view, index=index, where=where)
    params = {key: v for key, v in given.items() if v}
    return page.search(request, registry, params, read_upload(image, settings))

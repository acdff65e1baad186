"""Search: ``GET /api/search`` (a text, or ``like`` a document), ``POST /api/search`` (multipart:
an uploaded image, with or without text), ``POST /api/search/batch`` (JSON: many queries)."""

from __future__ import annotations

from typing import Union

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from .. import queries
from ..deps import (
    CALIBRATION_PARAM,
    CALIBRATION_PATTERN,
    K_PARAM,
    MIN_RELEVANCE_DESCRIPTION,
    MODALITY_PARAM,
    WHERE_PARAM,
    RegistryDep,
    RootDep,
    ServedDep,
    SettingsDep,
    read_upload,
)
from ..queries import MAX_BATCH, MAX_K
from ..schemas import ERRORS, BatchResponse, SearchResponse
from ..state import Served
from ..wire import answer

router = APIRouter(prefix="/api/search", tags=["search"], responses=ERRORS)


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
    calibration: str = Field("calibrated", pattern=CALIBRATION_PATTERN)
    index: Union[str, None] = None
    where: Union[str, None] = Field(None, max_length=2_000, description="SQL condition on metadata fields.")
    min_relevance: Union[float, None] = Field(None, ge=0, le=1, description=MIN_RELEVANCE_DESCRIPTION)


@router.get("", response_model=SearchResponse, summary="Search with a text, or for documents like a document")
def search_get(
    served: ServedDep,
    root: RootDep,
    q: Union[str, None] = Query(None, description="Query text.", max_length=10_000),
    like: Union[str, None] = Query(None, description="A document id: search with its stored image (or text)."),
    k: int = K_PARAM,
    modality: Union[str, None] = MODALITY_PARAM,
    calibration: str = CALIBRATION_PARAM,
    where: Union[str, None] = WHERE_PARAM,
    min_relevance: Union[float, None] = Query(None, ge=0, le=1, description=MIN_RELEVANCE_DESCRIPTION),
) -> Response:
    """Rank with a text, or with a document's stored embedding (``like``), or both."""
    query = queries.Query(text=q, like=like)
    return _search(served, root, query, k, modality, calibration, where, min_relevance)


@router.post("", response_model=SearchResponse, summary="Search with an uploaded image, alone or with a text")
def search_post(
    registry: RegistryDep,
    settings: SettingsDep,
    root: RootDep,
    image: Union[UploadFile, None] = File(None, description="Query image (JPEG, PNG, GIF, WebP, BMP, TIFF)."),
    q: Union[str, None] = Form(None, description="Query text (with an image: an image+text query).", max_length=10_000),
    like: Union[str, None] = Form(None, description="A document id, instead of an uploaded image."),
    k: int = Form(10, ge=1, le=MAX_K),
    modality: Union[str, None] = Form(None),
    calibration: str = Form("calibrated", pattern=CALIBRATION_PATTERN),
    index: Union[str, None] = Form(None),
    where: Union[str, None] = Form(None, max_length=2_000),
    min_relevance: Union[float, None] = Form(None, ge=0, le=1, description=MIN_RELEVANCE_DESCRIPTION),
) -> Response:
    """Rank with an uploaded image, alone or with a text (an image+text query)."""
    served = registry.get(index)
    query = queries.Query(text=q, like=like, **read_upload(image, settings))
    return _search(served, root, query, k, modality, calibration, where, min_relevance)


@router.post("/batch", response_model=BatchResponse, summary="Many queries at once (texts and/or like=document id)")
def search_batch(registry: RegistryDep, root: RootDep, body: BatchRequest) -> Response:
    """Rank many queries under one view; texts are encoded together."""
    served = registry.get(body.index)
    asked = [
        queries.Query(text=q) if isinstance(q, str) else queries.Query(text=q.text, like=q.like) for q in body.queries
    ]
    modality = queries.parse_modality(body.modality)
    results, took = queries.run_batch(
        served,
        asked,
        k=body.k,
        modality=modality,
        view=body.calibration,
        where=body.where,
        min_relevance=body.min_relevance,
    )
    return answer(
        BatchResponse.model_validate(
            {
                **_about(served, body.calibration),
                "k": body.k,
                "modality": modality,
                "where": body.where,
                "min_relevance": body.min_relevance,
                "took_ms": round(took, 2),
                "results": [
                    {"query": q.describe(), "hits": [queries.hit_json(h, served, root) for h in hits]}
                    for q, hits in zip(asked, results)
                ],
            }
        )
    )


def _search(
    served: Served,
    root: str,
    query: queries.Query,
    k: int,
    modality: str | None,
    view: str,
    where: str | None = None,
    min_relevance: float | None = None,
) -> Response:
    filter_ = queries.parse_modality(modality)
    hits, took = queries.run(
        served, query, k=k, modality=filter_, views=[view], where=where, min_relevance=min_relevance
    )
    return answer(
        SearchResponse.model_validate(
            {
                **_about(served, view),
                "query": query.describe(),
                "k": k,
                "modality": filter_,
                "where": where,
                "min_relevance": min_relevance,
                "took_ms": round(took, 2),
                "hits": [queries.hit_json(h, served, root) for h in hits[view]],
            }
        )
    )


def _about(served: Served, view: str) -> dict:
    return {
        "index": served.name,
        "model": queries.model_info(served),
        "calibration": queries.calibration_info(served, view),
    }

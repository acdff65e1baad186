"""The server's JSON bodies as pydantic models: the routes declare them (``response_model=``, so
``/openapi.json`` has a schema for every answer) and ``mixsearch.client.Client`` parses answers with
them. Only pydantic here (it comes with typer, a core dependency): the client imports this module
without fastapi, uvicorn, torch or any index code.

The wire format is the one the server has always spoken: fields listed in ``omit_none`` are left
out of the JSON when empty (as ``Hit.to_dict`` does) instead of sent as ``null``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from ..types import Hit


class Wire(BaseModel):
    """A response body: ``omit_none`` fields are dropped from the JSON when None."""

    omit_none: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: Any):  # unannotated: a return type would become the JSON schema
        data = handler(self)
        for key in self.omit_none:
            if data.get(key) is None:
                data.pop(key, None)
        return data


class ErrorResponse(Wire):
    """Every error: a message, and for a request that did not validate, FastAPI's error list."""

    omit_none: ClassVar[tuple[str, ...]] = ("errors",)

    detail: Any = Field(..., description="What was wrong, in words.")
    errors: list[dict[str, Any]] | None = Field(None, description="Validation errors: loc, msg, type.")


#: ``responses=`` for routes: the error body for each status they can answer.
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": about}
    for status, about in (
        (400, "Bad input (an unreadable upload, a document without the part asked for)"),
        (401, "No token, or a wrong one (a server with a token)"),
        (403, "A browser's request on behalf of another site's page (see --allow-origin)"),
        (404, "No such index or document"),
        (413, "Upload over the size or pixel limit"),
        (415, "Upload that is not an image"),
        (422, "Invalid parameters"),
        (503, "The index cannot be read right now"),
    )
}


class HitModel(Wire):
    """One result: ``Hit``'s fields (media as file names, never server paths) and media URLs."""

    omit_none: ClassVar[tuple[str, ...]] = (
        "text",
        "image",
        "audio",
        "video",
        "metadata",
        "relevance",
        "image_url",
        "audio_url",
        "video_url",
        "thumbnail_url",
    )

    rank: int = Field(..., description="From 1.")
    id: str
    score: float = Field(..., description="Cosine similarity under the view asked for.")
    modality: str = Field(..., description="text, image, multimodal, audio or video.")
    text: str | None = None
    image: str | None = Field(None, description="The image's file name.")
    audio: str | None = None
    video: str | None = None
    metadata: dict[str, Any] | None = Field(None, description="The document's metadata fields.")
    relevance: float | None = Field(None, description="Estimated relevance (0-1), with a relevance map.")
    image_url: str | None = None
    audio_url: str | None = None
    video_url: str | None = None
    thumbnail_url: str | None = None

    def to_hit(self) -> Hit:
        """The result as the Python API gives it (``mixsearch.Hit``; media as file names)."""
        return Hit(
            self.rank,
            self.id,
            self.score,
            self.modality,
            self.text,
            self.image,
            self.audio,
            self.video,
            self.metadata or None,
            self.relevance,
        )


class QueryEcho(Wire):
    """The query as the server understood it."""

    omit_none: ClassVar[tuple[str, ...]] = ("image", "like")

    text: str | None = None
    image: str | None = Field(None, description="The uploaded file's name.")
    like: str | None = Field(None, description="The document id searched like.")
    kind: str = Field(..., description="text, image or image+text.")


class ModelInfo(BaseModel):
    """The model an index was built with (name, fingerprint, dim, modalities, ...)."""

    model_config = ConfigDict(extra="allow")

    name: str
    fingerprint: str | None = None


class CalibrationInfo(BaseModel):
    """The view ranked under and its calibration record (method, alpha, source, provenance, ...)."""

    model_config = ConfigDict(extra="allow")

    view: str = Field(..., description="calibrated, or none (plain CLIP).")
    method: str | None = None


class _Answer(Wire):
    index: str
    model: ModelInfo
    calibration: CalibrationInfo
    k: int
    modality: list[str] | None = Field(None, description="The modality filter, as engine names.")
    where: str | None = None
    min_relevance: float | None = None
    took_ms: float


class SearchResponse(_Answer):
    """The answer to one query."""

    omit_none: ClassVar[tuple[str, ...]] = ("min_relevance",)

    query: QueryEcho
    hits: list[HitModel]

    def to_hits(self) -> list[Hit]:
        """The hits as ``mixsearch.Hit`` objects."""
        return [h.to_hit() for h in self.hits]


class BatchResult(BaseModel):
    """One query of a batch and its hits."""

    query: QueryEcho
    hits: list[HitModel]


class BatchResponse(_Answer):
    """The answers to a batch, in the order asked."""

    omit_none: ClassVar[tuple[str, ...]] = ("min_relevance",)

    results: list[BatchResult]

    def to_hits(self) -> list[list[Hit]]:
        """One list of ``mixsearch.Hit`` per query."""
        return [[h.to_hit() for h in r.hits] for r in self.results]


class DocumentResponse(Wire):
    """A document by id: its fields, its row in the index, and its media URLs."""

    omit_none: ClassVar[tuple[str, ...]] = HitModel.omit_none

    index: str
    row: int
    id: str
    modality: str
    text: str | None = None
    image: str | None = None
    audio: str | None = None
    video: str | None = None
    metadata: dict[str, Any] | None = None
    relevance: float | None = None
    image_url: str | None = None
    audio_url: str | None = None
    video_url: str | None = None
    thumbnail_url: str | None = None


class IndexHealth(Wire):
    """One served index's state."""

    omit_none: ClassVar[tuple[str, ...]] = ("reload_error",)

    documents: int
    generation: int | None = None
    reload_error: str | None = Field(None, description="Why the last reload failed (the old state still serves).")


class HealthResponse(BaseModel):
    """Whether the server is up: ``ok``, or ``degraded`` when an index failed to reload."""

    status: str
    indexes: dict[str, IndexHealth]


class IndexInfo(BaseModel):
    """What one served index holds and how it ranks."""

    model: ModelInfo
    calibration: CalibrationInfo
    views: dict[str, str | None] = Field(..., description="Each view's calibration method.")
    documents: dict[str, int] = Field(..., description="Documents per modality.")
    generation: int | None = None
    created: str | None = None
    skipped: int = Field(..., description="Documents skipped at build time.")


class InfoResponse(BaseModel):
    """The server's version and every served index (``default``: the one used when none is named)."""

    mixsearch: str
    default: str
    indexes: dict[str, IndexInfo]


class ReloadResponse(BaseModel):
    """What a reload did to each index: ``unchanged``, ``reloaded`` or ``error: ...``."""

    indexes: dict[str, str]


__all__ = [
    "ERRORS",
    "BatchResponse",
    "BatchResult",
    "CalibrationInfo",
    "DocumentResponse",
    "ErrorResponse",
    "HealthResponse",
    "HitModel",
    "IndexHealth",
    "IndexInfo",
    "InfoResponse",
    "ModelInfo",
    "QueryEcho",
    "ReloadResponse",
    "SearchResponse",
]

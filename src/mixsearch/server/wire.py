"""A route's answer as the JSON bytes of a response model it has already validated.

A route that returns the model makes FastAPI validate it a second time, in a threadpool hop of
its own for a plain ``def`` route, before the same pydantic serializer writes the same bytes;
a ``Response`` is sent as it is (the route keeps ``response_model=`` for the OpenAPI schema)."""

from __future__ import annotations

from fastapi.responses import Response
from pydantic import BaseModel


def answer(model: BaseModel) -> Response:
    """``model`` as FastAPI itself would have sent it (``by_alias``, the model's own serializer)."""
    return Response(model.model_dump_json(by_alias=True), media_type="application/json")

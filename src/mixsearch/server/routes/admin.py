"""The server's state: ``GET /health``, ``GET /info``, ``POST /reload``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from ..._version import __version__
from .. import queries
from ..deps import RegistryDep, no_form_body
from ..redact import redact_paths
from ..schemas import ERRORS, HealthResponse, InfoResponse, ReloadResponse
from ..state import Served, manifest_of
from ..wire import answer

router = APIRouter(tags=["status"], responses={401: ERRORS[401]})


@router.get("/health", response_model=HealthResponse, summary="Whether the server is up, and each index's state")
def health(registry: RegistryDep) -> Response:
    """Each served index's documents and generation; ``degraded`` when a reload failed."""
    return answer(
        HealthResponse.model_validate(
            {
                "status": "ok" if not registry.errors else "degraded",
                "indexes": {
                    name: {
                        "documents": len(s.index),
                        "generation": manifest_of(s.index).get("generation"),
                        "reload_error": redact_paths(registry.errors.get(name)),
                    }
                    for name, s in registry.served.items()
                },
            }
        )
    )


@router.get(
    "/info", response_model=InfoResponse, summary="Model, calibration and its provenance, documents per modality"
)
def info(registry: RegistryDep) -> Response:
    """Each served index's model, calibration (with provenance), views and documents per modality."""
    return answer(
        InfoResponse.model_validate(
            {
                "mixsearch": __version__,
                "default": registry.default,
                "indexes": {name: _info(s) for name, s in registry.served.items()},
            }
        )
    )


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={
        403: ERRORS[403],
        415: {**ERRORS[415], "description": "A body that is not JSON (as a form would send)"},
        422: ERRORS[422],
    },
    summary="Reopen every index changed on disk (rebuilt, recalibrated)",
    dependencies=[Depends(no_form_body)],  # never the target of another site's form
)
def reload(
    registry: RegistryDep, force: bool = Query(False, description="Reopen every index, changed or not.")
) -> Response:
    """Swap in every index changed on disk; the old state keeps serving an index that fails to reopen."""
    return answer(ReloadResponse(indexes=redact_paths(registry.reload(force=force))))


def _info(served: Served) -> dict:
    manifest = manifest_of(served.index)
    return {
        "model": queries.model_info(served),
        "calibration": queries.calibration_info(served, "calibrated"),
        "views": {v: queries.calibration_info(served, v)["method"] for v in served.views()},
        "documents": served.counts(),
        "generation": manifest.get("generation"),
        "created": manifest.get("created"),
        "skipped": len(manifest.get("build", {}).get("skipped_ids", [])),
    }

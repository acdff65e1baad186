"""The one place errors become HTTP statuses.

Every error mixsearch raises on purpose maps to a status by its class (the most specific class
listed wins); a request the server cannot parse is 422 with a message. Error bodies are
``{"detail": "<message>"}`` (validation errors also carry ``errors``, FastAPI's list).
"""

from __future__ import annotations

from ..errors import (
    CalibrationError,
    InputError,
    MissingDependencyError,
    MixsearchError,
    ModelError,
    UsageError,
    VectorIndexError,
)
from .state import NotFound


class UploadTooLarge(InputError):
    """An upload over the size or pixel limit (HTTP 413)."""


class NotAnImage(InputError):
    """An upload that is not an image of a supported format (HTTP 415)."""


class Unauthorized(MixsearchError):
    """A request without the server's token (HTTP 401)."""


#: Error class -> HTTP status, most specific first.
STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (Unauthorized, 401),
    (NotFound, 404),
    (UploadTooLarge, 413),
    (NotAnImage, 415),
    (UsageError, 422),
    (InputError, 400),  # a bad upload, a document without the part asked for
    (MissingDependencyError, 500),
    (ModelError, 500),
    (CalibrationError, 500),
    (VectorIndexError, 503),  # the index cannot be read (being replaced, removed)
    (MixsearchError, 500),
)


def status_of(err: BaseException) -> int:
    """The HTTP status an error maps to (500 for anything unexpected)."""
    return next((status for cls, status in STATUS if isinstance(err, cls)), 500)

"""The server's routes, one ``APIRouter`` per area: ``search``, ``documents`` (documents, media,
thumbnails), ``admin`` (health, info, reload) and ``page`` (the web page at ``/``)."""

from __future__ import annotations

from . import admin, documents, page, search

#: Every router, in the order ``create_app`` includes them.
ROUTERS = (admin.router, search.router, documents.router, page.router)

__all__ = ["ROUTERS"]

"""The serving face of mixsearch: a REST API and a web page over the public Python API.

``create_app(folders)`` gives the FastAPI application; ``serve(folders, host=..., port=...)``
runs it until stopped (``mixsearch serve`` is a thin face over it). Needs the ``serve`` extra
(``pip install 'mixsearch[serve]'``); the client side (``mixsearch.client``) needs only the
standard library.
"""

from __future__ import annotations

from typing import Any

from .run import serve


def create_app(*args: Any, **kwargs: Any) -> Any:
    """The FastAPI application over index folders (see ``mixsearch.server.app.create_app``)."""
    from .app import create_app as create

    return create(*args, **kwargs)


__all__ = ["create_app", "serve"]

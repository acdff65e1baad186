"""The serving face of mixsearch: a REST API and a web page over the public Python API.

``create_app(folders)`` gives the FastAPI application; ``serve(folders, host=..., port=...)``
runs it until stopped (``mixsearch serve`` is a thin face over it). Needs the ``serve`` extra
(``pip install 'mixsearch[serve]'``). Importing this package loads nothing heavy, so the client
(``mixsearch.client``) can share the response models in ``mixsearch.server.schemas`` (pydantic
only) without fastapi, uvicorn or the engine.
"""

from __future__ import annotations

from typing import Any


def create_app(*args: Any, **kwargs: Any) -> Any:
    """The FastAPI application over index folders (see ``mixsearch.server.app.create_app``)."""
    from .app import create_app as create

    return create(*args, **kwargs)


def serve(*args: Any, **kwargs: Any) -> Any:
    """Serve index folders until Ctrl-C (see ``mixsearch.server.run.serve``)."""
    from .run import serve as run

    return run(*args, **kwargs)


__all__ = ["create_app", "serve"]

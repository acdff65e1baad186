"""The web page: one server-rendered template (Jinja2, autoescaped: every document text is shown
as text) and a little JavaScript for drag-and-drop, the calibration toggle and the share bars.

The page runs queries through ``queries.run`` like the API, encoding once and ranking under both
views for the side-by-side display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ..errors import MixsearchError, UsageError
from ..types import MODALITY_TAGS
from . import media, queries
from .redact import redact_paths, redact_text
from .state import VIEW_ALIASES, NotFound, Registry, Served, manifest_of
from .uploads import thumbnail_data_uri

#: How each document modality is shown: badge text (the demo's and the audit's tags) and its name.
BADGES = {m: (tag, m) for m, tag in MODALITY_TAGS.items()}
#: The ranking toggle's values (``plain``, the old name of ``none``, is still read from addresses).
PAGE_VIEWS = ("both", "calibrated", "none")
K_CHOICES = (10, 20, 50, 100)
#: The page's Content-Security-Policy: scripts only from the server's own files.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class Page:
    """Renders the search page."""

    def __init__(self, templates: Path):
        from jinja2 import Environment, FileSystemLoader, select_autoescape

        self.env = Environment(
            loader=FileSystemLoader(str(templates)), autoescape=select_autoescape(["html"]), trim_blocks=True
        )
        self.template = self.env.get_template("index.html")

    def search(self, request: Any, registry: Registry, params: dict[str, str], upload: dict | None) -> Any:
        """The page for a request: the form, and results when a query was given."""
        served = registry.get(params.get("index") or None)
        context = self._base(request, registry, served, params)
        upload = upload or {}
        query = queries.Query(
            text=(params.get("q") or "").strip() or None,
            like=params.get("like") or None,
            image=upload.get("image"),
            image_name=upload.get("image_name"),
        )
        if query.text is None and query.like is None and query.image is None:
            context["gallery"] = self._gallery(served, context)
            return self._render(context, 200)
        k = _int(params.get("k"), 10)
        modality = queries.parse_modality(params.get("modality") or None)
        where = (params.get("where") or "").strip() or None
        hits, took = queries.run(served, query, k=k, modality=modality, views=served.views(), where=where)
        context.update(took_ms=took, query=self._query(served, query, context))
        context["columns"] = [self._column(served, view, hits[view], context) for view in served.views()]
        if len(hits) == 2:  # mark what calibration moved, against the plain ranking
            _mark_moves(context["columns"][0]["hits"], hits["none"])
        return self._render(context, 200)

    def error(self, request: Any, registry: Registry, message: str, status: int) -> Any:
        """The page with an error message instead of results."""
        params = dict(request.query_params)
        try:
            served = registry.get(params.get("index") or None)
        except NotFound:
            served = registry.get(None)
        context = self._base(request, registry, served, params)
        context["error"] = message
        return self._render(context, status)

    # -- pieces ---------------------------------------------------------------------------------

    def _base(self, request: Any, registry: Registry, served: Served, params: dict[str, str]) -> dict:
        root = request.scope.get("root_path", "")
        view = params.get("view") or "both"
        view = VIEW_ALIASES.get(view, view)
        if view not in PAGE_VIEWS:
            view = "both"
        if not served.calibrated:
            view = "calibrated"
        k = params.get("k") or "10"
        counts = served.counts()
        calibration = manifest_of(served.index)["calibration"]
        provenance = calibration.get("provenance") or {}
        return {
            "root": root,
            "indexes": list(registry.served),
            "index": served.name,
            "model": _short(served.model.get("name")),
            "model_full": redact_text(str(served.model.get("name"))),
            "documents": len(served.index),
            "counts": [(m, counts.get(m, 0)) for m in BADGES if counts.get(m)],
            "calibration": {
                "method": calibration.get("method"),
                "alpha": calibration.get("alpha"),
                "source": _source(calibration.get("source")),
                "description": redact_paths(provenance.get("description")),
            },
            "calibrated": served.calibrated,
            "q": params.get("q") or "",
            "k": k,
            "k_choices": sorted({*K_CHOICES, int(k)}) if k.isdigit() and 1 <= int(k) <= queries.MAX_K else K_CHOICES,
            "modality": params.get("modality") or "",
            "where": params.get("where") or "",
            "fields": served.index.fields(),
            "view": view,
            "columns": [],
            "query": None,
            "error": None,
            "gallery": [],
            "badges": BADGES,
        }

    def _query(self, served: Served, query: queries.Query, context: dict) -> dict:
        out: dict[str, Any] = {"text": query.text, "kind": query.describe()["kind"]}
        if query.image is not None:
            out["image"] = thumbnail_data_uri(query.image)
            out["image_name"] = query.image_name
        if query.like is not None:
            doc = served.document(query.like)
            out["like"] = query.like
            out["like_text"] = doc.get("text")
            if doc.get("image"):
                out["image"] = queries.media_url(context["root"], "thumbnail", served, query.like, size=256)
        return out

    def _column(self, served: Served, view: str, hits: list, context: dict) -> dict:
        calibration = manifest_of(served.view(view))["calibration"]
        if view == "none":
            label, about = "Plain CLIP", "raw cosine similarity: no modality-gap correction"
        elif served.calibrated:
            label, about = (
                "GR-calibrated",
                f"per-modality means subtracted ({calibration.get('method')}, α={calibration.get('alpha')})",
            )
        else:
            label, about = "Plain CLIP", "this index was built without calibration"
        share = queries.share(hits)
        return {
            "view": view,
            "label": label,
            "about": about,
            "hits": [self._hit(served, h, context) for h in hits],
            "share": [(m, BADGES[m][1], round(100 * share[m])) for m in BADGES if share.get(m)],
        }

    def _hit(self, served: Served, hit: Any, context: dict) -> dict:
        root = context["root"]
        shown = bool(hit.image) and _servable(served, hit.id)
        links = {key: context[key] for key in ("k", "modality", "where", "view") if context.get(key)}
        like = f"{root}/?" + urlencode({"like": hit.id, "index": served.name, **links})
        return {
            "rank": hit.rank,
            "id": hit.id,
            "score": hit.score,
            "modality": hit.modality,
            "badge": BADGES.get(hit.modality, (hit.modality, hit.modality))[0],
            "kind": BADGES.get(hit.modality, (hit.modality, hit.modality))[1],
            "text": hit.text,
            "thumb": queries.media_url(root, "thumbnail", served, hit.id, size=320) if shown else None,
            "original": queries.media_url(root, "media", served, hit.id) if shown else None,
            "missing": bool(hit.image) and not shown,
            "like": like if hit.image else None,
            "metadata": [(key, _shown(value)) for key, value in (hit.metadata or {}).items()],
            "moved": None,  # set by _mark_moves on the calibrated column
        }

    def _gallery(self, served: Served, context: dict, n: int = 12) -> list[dict]:
        """Some of the index's photos to start from ("more like this"), evenly spread."""
        images = [i for i, p in enumerate(served.index.documents.get("image", [])) if p]
        if not images:
            return []
        step = max(1, len(images) // n)
        picked = [row for row in images[::step] if _servable(served, served.index.ids[row])][:n]
        root = context["root"]
        out = []
        for row in picked:
            doc_id = served.index.ids[row]
            out.append(
                {
                    "id": doc_id,
                    "thumb": queries.media_url(root, "thumbnail", served, doc_id, size=320),
                    "like": f"{root}/?" + urlencode({"like": doc_id, "index": served.name}),
                }
            )
        return out

    def _render(self, context: dict, status: int) -> Any:
        from fastapi.responses import HTMLResponse

        return HTMLResponse(
            self.template.render(**context), status_code=status, headers={"Content-Security-Policy": CSP}
        )


def _mark_moves(shown: list[dict], plain: list) -> None:
    """Mark each calibrated hit against the plain ranking: ``▲3`` (three places higher than plain
    CLIP put it), ``▼2``, ``new`` (not in plain CLIP's top k), or nothing (the same place)."""
    plain_rank = {h.id: h.rank for h in plain}
    for hit in shown:
        before = plain_rank.get(hit["id"])
        if before is None:
            hit["moved"] = ("new", "up", "not in plain CLIP's top results")
        elif before != hit["rank"]:
            up = before > hit["rank"]
            arrow = "▲" if up else "▼"
            hit["moved"] = (
                f"{arrow}{abs(before - hit['rank'])}",
                "up" if up else "down",
                f"plain CLIP ranked it #{before}",
            )


def _shown(value: Any) -> str:
    """A metadata value as text (lists and dicts as JSON)."""
    import json

    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _servable(served: Served, doc_id: str) -> bool:
    """Whether a document's image can be served (recorded, still there, inside the corpus)."""
    try:
        media.media_file(served, doc_id, "image")
    except MixsearchError:
        return False
    return True


def _int(value: str | None, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        return queries.check_k(int(str(value)))
    except ValueError:
        raise UsageError(f"k must be a whole number from 1 to {queries.MAX_K}, got {value!r}") from None


def _short(name: Any) -> str:
    """A model as people read it: its name, or a local folder's last part."""
    text = str(name or "")
    return Path(text).name if text.startswith(("/", ".", "~")) else text


def _source(source: Any) -> str | None:
    """A calibration source as people read it: a file's name, not the server's path."""
    if not source:
        return None
    text = str(source)
    return Path(text).name if "/" in text or "\\" in text else text


__all__ = ["Page", "MixsearchError"]

"""One query, as the API and the page both run it: validate, encode once (text, uploaded image,
or a document's stored embedding for "more like this"), then rank under each view asked for
through ``MixIndex.search_vectors`` — the same search path as every other face of mixsearch.

Every call the server makes into the engine's search and encoding API is in this module
(``encode``, ``_rank``, ``warm_up``), so a change of that API is a change here only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np

from ..errors import UsageError
from ..index import Filter
from ..types import Hit, modality_name
from .redact import redact_paths
from .state import Served, manifest_of, view_name

#: The most hits one query may ask for, and the most queries one batch may hold.
MAX_K = 1000
MAX_BATCH = 256
#: Names the server also takes for "no modality filter" (other aliases: ``types.modality_name``).
ALIASES = {"all": None, "": None}


@dataclass
class Query:
    """What a client asked: a text, an uploaded image, a document to find more like, or a mix."""

    text: str | None = None
    image: Any = None  # a decoded PIL image
    image_name: str | None = None
    like: str | None = None

    def describe(self) -> dict:
        """The query as a response echoes it."""
        out: dict[str, Any] = {"text": self.text}
        if self.image is not None:
            out["image"] = self.image_name or "upload"
        if self.like is not None:
            out["like"] = self.like
        has_image, has_text = self.image is not None or self.like is not None, bool(self.text and self.text.strip())
        out["kind"] = "image+text" if has_image and has_text else "image" if has_image else "text"
        return out


def parse_modality(value: str | None) -> list[str] | None:
    """``text``, ``image,multimodal``, ``image+text``... as the engine's filter names (checked)."""
    if value is None:
        return None
    names = [ALIASES[part.strip()] if part.strip() in ALIASES else modality_name(part) for part in value.split(",")]
    wanted = [n for n in names if n is not None]
    if not wanted:
        return None
    if len(wanted) < len(names):
        raise UsageError(f"modality {value!r}: 'all' cannot be combined with other modalities")
    Filter.of(wanted)  # raises UsageError naming the valid ones
    return wanted


def check_k(k: int) -> int:
    """A number of hits within the server's bounds."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise UsageError(f"k must be a whole number from 1 to {MAX_K}, got {k!r}")
    return k


def encode(served: Served, texts: list[str] | None = None, images: list[Any] | None = None) -> dict[str, np.ndarray]:
    """Raw query embeddings through the index's model, one encoding at a time per model
    (tokenizers are not thread-safe, and on few cores one at a time is also the fastest)."""
    if texts is None and images is None:
        raise UsageError("empty query: give a text, an image, or both")
    encoder = served.index.encoder
    with served.encode_lock:
        parts = {"text": encoder.encode_query(texts, "text", progress=False)} if texts is not None else {}
        if images is not None:
            parts["image"] = encoder.encode_query(images, "image", progress=False)
    return parts


def _rank(index: Any, vectors: dict[str, np.ndarray], **options: Any) -> list[list[Hit]]:
    """One hit list per query row of ``vectors`` (raw embeddings by part), calibrated and ranked
    by ``index`` (a view of the served index)."""
    return list(index.search_vectors(vectors, **options))


def warm_up(served: Served) -> None:
    """One query of each kind the model takes, so the first user query is as fast as the rest."""
    from PIL import Image

    modalities = set(served.model.get("modalities", ["text"]))
    images = [Image.new("RGB", (64, 64), (128, 128, 128))] if "image" in modalities else None
    texts = ["warm up"] if "text" in modalities else None
    vectors = encode(served, texts, images)
    for name in served.views():
        _rank(served.view(name), vectors, k=1)


def embeddings(served: Served, query: Query) -> dict[str, np.ndarray]:
    """Raw query embeddings: text and uploaded image through the model, ``like`` from the index."""
    text = query.text if query.text and query.text.strip() else None
    if query.image is not None and query.like is not None:
        raise UsageError("give an uploaded image or like=<document id>, not both")
    parts: dict[str, np.ndarray] = {}
    if query.like is not None:
        doc = served.document(query.like)
        part = "image" if doc.get("image") else "text"
        if part == "text" and text is not None:
            raise UsageError(f"document {query.like!r} has no image to pair with the query text")
        parts[part] = served.raw_row(part, query.like)
    if text is not None or query.image is not None:
        parts.update(encode(served, None if text is None else [text], None if query.image is None else [query.image]))
    if not parts:
        raise UsageError("empty query: give a text, an image, or like=<document id>")
    return parts


def run(
    served: Served,
    query: Query,
    *,
    k: int,
    modality: list[str] | None,
    views: list[str],
    where: str | None = None,
    min_relevance: float | None = None,
) -> tuple[dict[str, list[Hit]], float]:
    """Hits of one query under each view, and the milliseconds it took (encoding included);
    ``min_relevance`` needs a view whose calibration has a relevance map."""
    check_k(k)
    for view in views:
        served.view(view).filter(modality, where)  # an unknown view or a bad filter fails before the model runs
        served.view(view).check_min_relevance(min_relevance)  # so does a cut without a relevance map
    started = time.perf_counter()
    vectors = embeddings(served, query)
    hits = {
        view: _rank(served.view(view), vectors, k=k, modality=modality, where=where, min_relevance=min_relevance)[0]
        for view in views
    }
    return hits, (time.perf_counter() - started) * 1000


def run_batch(
    served: Served,
    queries: list[Query],
    *,
    k: int,
    modality: list[str] | None,
    view: str,
    where: str | None = None,
    min_relevance: float | None = None,
) -> tuple[list[list[Hit]], float]:
    """Hits of many queries under one view: texts encoded together, each kind of query searched
    as one batch, answers in the order asked."""
    check_k(k)
    if not queries or len(queries) > MAX_BATCH:
        raise UsageError(f"a batch holds 1 to {MAX_BATCH} queries, got {len(queries)}")
    index = served.view(view)
    index.filter(modality, where)  # a bad filter fails before the model runs
    index.check_min_relevance(min_relevance)  # so does a cut without a relevance map
    options = dict(k=k, modality=modality, where=where, min_relevance=min_relevance)
    started = time.perf_counter()
    out: list[list[Hit]] = [[] for _ in queries]
    plain_texts = [i for i, q in enumerate(queries) if q.like is None and q.image is None]
    if plain_texts:
        texts = [queries[i].text or "" for i in plain_texts]
        for i, t in zip(plain_texts, texts):
            if not t.strip():
                raise UsageError(f"query {i}: empty query: give a text or like=<document id>")
        found = _rank(index, encode(served, texts), **options)
        for i, hits in zip(plain_texts, found):
            out[i] = hits
    done = set(plain_texts)
    for i, q in enumerate(queries):
        if i not in done:
            out[i] = _rank(index, embeddings(served, q), **options)[0]
    return out, (time.perf_counter() - started) * 1000


def calibration_info(served: Served, view: str) -> dict:
    """What a client needs to know about the ranking it got: the view, the calibration and its
    provenance, with file names where the manifest recorded the server's paths."""
    record = manifest_of(served.view(view))["calibration"]
    keep = ("method", "alpha", "source", "counts", "fitted_for", "provenance", "notes")
    info = redact_paths({key: record[key] for key in keep if key in record})
    if isinstance(info.get("source"), str):  # a calibration file, however it was given: its name
        info["source"] = Path(info["source"]).name or info["source"]
    return {"view": view_name(view), **info}


def model_info(served: Served) -> dict:
    """The model an index was built with, a local folder given by its name."""
    return redact_paths(served.model)


def media_url(root: str, kind: str, served: Served, doc_id: str, **params: Any) -> str:
    """The URL of a document's media (``kind``: ``media`` or ``thumbnail``); ids are escaped whole."""
    query = urlencode({"index": served.name, **params})
    return f"{root}/api/{kind}/{quote(doc_id, safe='')}?{query}"


def hit_json(hit: Hit, served: Served, root: str = "") -> dict:
    """A hit for clients: media as their file name and URLs, never the server's paths."""
    out = hit.to_dict()
    for part in ("image", "audio", "video"):
        if out.get(part):
            out[part] = Path(out[part]).name
            out[f"{part}_url"] = media_url(root, "media", served, hit.id)
    if hit.image:
        out["thumbnail_url"] = media_url(root, "thumbnail", served, hit.id, size=256)
    return out


def share(hits: list[Hit]) -> dict[str, float]:
    """The share of each document modality among the hits (text, image, multimodal, ...)."""
    if not hits:
        return {}
    counts: dict[str, int] = {}
    for h in hits:
        counts[h.modality] = counts.get(h.modality, 0) + 1
    return {m: n / len(hits) for m, n in counts.items()}

"""A client of a running ``mixsearch serve`` (no torch, no model: a query answers in milliseconds).
Answers are parsed with the server's own response models (``mixsearch.server.schemas``, pydantic
only), and hits come back as ``mixsearch.Hit``, as from ``index.search``.

    from mixsearch.client import Client
    client = Client("http://127.0.0.1:8000", token=None)
    hits = client.search("a dog running on the beach", k=5)              # -> list[Hit]
    hits = client.search(image="photo.jpg", modality="text")               # image (uploaded)
    per_query = client.search_batch(["a dog", "a cat"], k=3)               # -> list[list[Hit]]
    answer = client.search_response("a dog")                               # the whole SearchResponse
    hits[0].id, answer.calibration.method, answer.took_ms

Errors come back as mixsearch's own: ``UsageError`` for a 422 or 404 (a bad parameter, an index
or document this server does not have), ``InputError`` for a refused upload, ``MixsearchError``
for the rest (no server at the address, a missing token).

A ``Client`` keeps one keep-alive connection per thread (so one client can be shared by threads),
reopened once when the server has closed an idle one; through an HTTP proxy from the environment
(``http_proxy``...) it asks through ``urllib``, a new connection per request.
"""

from __future__ import annotations

import http.client
import json
import mimetypes
import os
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import InputError, MixsearchError, UsageError
from .server.schemas import BatchResponse, DocumentResponse, HealthResponse, InfoResponse, SearchResponse
from .types import Hit

M = TypeVar("M", bound=BaseModel)


class Client:
    """Talks to a mixsearch server at ``url`` (``token``: its access token, if it has one)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0):
        if not url.startswith(("http://", "https://")):
            url = "http://" + url
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        parts = urllib.parse.urlsplit(self.url)
        self._https, self._host, self._port = parts.scheme == "https", parts.hostname or "", parts.port
        self._base = parts.path  # a server behind a proxy, under a path
        proxy = urllib.request.getproxies().get(parts.scheme)
        self._proxied = bool(proxy) and not urllib.request.proxy_bypass(parts.netloc)
        self._local = threading.local()  # each thread's connection: http.client's are not thread-safe

    def search(
        self,
        text: str | None = None,
        image: str | Path | None = None,
        *,
        k: int = 10,
        modality: str | None = None,
        calibration: str = "calibrated",
        index: str | None = None,
        like: str | None = None,
        where: str | None = None,
        min_relevance: float | None = None,
    ) -> list[Hit]:
        """One query's hits: a text, an image file (uploaded), both, or ``like`` a document id;
        ``where`` is an SQL condition on the documents' metadata; ``min_relevance`` drops hits below
        that estimated relevance (indexes with a relevance map). Media come as file names."""
        return self.search_response(
            text,
            image,
            k=k,
            modality=modality,
            calibration=calibration,
            index=index,
            like=like,
            where=where,
            min_relevance=min_relevance,
        ).to_hits()

    def search_response(
        self,
        text: str | None = None,
        image: str | Path | None = None,
        *,
        k: int = 10,
        modality: str | None = None,
        calibration: str = "calibrated",
        index: str | None = None,
        like: str | None = None,
        where: str | None = None,
        min_relevance: float | None = None,
    ) -> SearchResponse:
        """``search``'s whole answer: the hits with their media URLs, the query as understood, the
        model, the calibration ranked under, the time taken."""
        fields: dict[str, object] = {"q": text, "k": k, "modality": modality, "calibration": calibration}
        fields.update(index=index, like=like, where=where, min_relevance=min_relevance)
        fields = {key: value for key, value in fields.items() if value is not None}
        if image is None:
            answer = self._request("GET", "/api/search?" + urllib.parse.urlencode(fields))
            return _parse(SearchResponse, answer)
        path = Path(image)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise UsageError(f"{image}: cannot read the query image ({err.strerror or err})") from None
        body, content_type = _multipart(fields, "image", path.name, data)
        return _parse(SearchResponse, self._request("POST", "/api/search", body, content_type))

    def search_batch(
        self,
        queries: list[str | dict[str, str]],
        *,
        k: int = 10,
        modality: str | None = None,
        **options: Any,
    ) -> list[list[Hit]]:
        """Many queries at once (texts, or ``{"text": ..., "like": doc_id}``), one hit list per
        query in the order asked; ``options``: ``calibration``, ``index``, ``where``, ``min_relevance``."""
        return self.search_batch_response(queries, k=k, modality=modality, **options).to_hits()

    def search_batch_response(
        self,
        queries: list[str | dict[str, str]],
        *,
        k: int = 10,
        modality: str | None = None,
        **options: Any,
    ) -> BatchResponse:
        """``search_batch``'s whole answer (``BatchResponse``)."""
        if isinstance(queries, str):  # a bare string is one query, never its characters
            raise UsageError("search_batch takes a list of queries; for one text, use search(text)")
        payload = {"queries": list(queries), "k": k, "modality": modality, **options}
        answer = self._request("POST", "/api/search/batch", json.dumps(payload).encode(), "application/json")
        return _parse(BatchResponse, answer)

    def info(self) -> InfoResponse:
        """What the server serves: models, calibrations, documents per modality."""
        return _parse(InfoResponse, self._request("GET", "/info"))

    def health(self) -> HealthResponse:
        """Whether the server is up (``status``: ok or degraded), and each index's state."""
        return _parse(HealthResponse, self._request("GET", "/health"))

    def document(self, doc_id: str, index: str | None = None) -> DocumentResponse:
        """A document by id."""
        query = "?" + urllib.parse.urlencode({"index": index}) if index else ""
        answer = self._request("GET", f"/api/documents/{urllib.parse.quote(doc_id, safe='')}{query}")
        return _parse(DocumentResponse, answer)

    def _request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            if self._proxied:
                status, reason, data = self._through_urllib(method, path, body, headers)
            else:
                status, reason, data = self._send(method, path, body, headers)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            why = getattr(err, "reason", None) or err
            raise MixsearchError(
                f"no mixsearch server answers at {self.url} ({why}); start one with 'mixsearch serve INDEX'"
            ) from None
        if status >= 400:
            raise _error(status, reason, data)
        return json.loads(data)

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, str, bytes]:
        """One request on this thread's keep-alive connection; when a reused connection turns out
        closed (the server drops idle ones after a few seconds), once more on a new one."""
        for attempt in (0, 1):
            connection = getattr(self._local, "connection", None)
            reused = connection is not None
            if connection is None:
                kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                connection = self._local.connection = kind(self._host, self._port, timeout=self.timeout)
            try:
                connection.request(method, self._base + path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as err:
                connection.close()
                self._local.connection = None
                if reused and attempt == 0 and not isinstance(err, TimeoutError):  # a slow answer is not retried
                    continue
                raise
            if response.will_close:
                connection.close()
                self._local.connection = None
            return response.status, response.reason, data
        raise AssertionError("unreachable")

    def _through_urllib(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str, bytes]:
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.reason, response.read()
        except urllib.error.HTTPError as err:
            return err.code, str(err.reason), err.read()

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends or the client goes)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


def _parse(model: type[M], answer: Any) -> M:
    """An answer as its response model; one that does not fit (another server, another version)
    is a ``MixsearchError`` naming what was wrong."""
    try:
        return model.model_validate(answer)
    except ValidationError as err:
        raise MixsearchError(f"the server's answer is not a {model.__name__}: {err}") from None


def _error(status: int, reason: str, data: bytes) -> MixsearchError:
    try:
        detail = json.loads(data).get("detail")
    except (ValueError, AttributeError):
        detail = None
    message = f"server answered {status}: {detail or reason}"
    if status == 401:
        return MixsearchError(f"{message} (give the token with --token or MIXSEARCH_TOKEN)")
    if status in (404, 422):
        return UsageError(message)
    if status in (400, 413, 415):
        return InputError(message)
    return MixsearchError(message)


def _multipart(fields: dict[str, Any], file_field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with ``fields`` and one file."""
    boundary = "mixsearch-" + secrets.token_hex(12)
    parts = []
    for key, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    safe_name = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{safe_name}"\r\n'
        f"Content-Type: {kind}\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def default_url() -> str | None:
    """The server address from ``MIXSEARCH_URL``, if set."""
    return os.environ.get("MIXSEARCH_URL") or None

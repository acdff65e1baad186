"""Uploaded query images: a body-size limit enforced while the request streams in, and decoding in
memory with Pillow's checks (format allow-list, decompression-bomb guard, a pixel limit).

Nothing an upload contains is written anywhere but the multipart parser's spooled temporary file
(the system temp area, removed when the request ends); the image is decoded from memory.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from .errors import NotAnImage, UploadTooLarge

#: Formats accepted as query images (Pillow's names).
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
#: Default limits: bytes of a request body, pixels of a decoded image.
MAX_UPLOAD_BYTES = 10 * 2**20
MAX_PIXELS = 40_000_000


def decode_image(data: bytes, *, name: str = "upload", max_pixels: int = MAX_PIXELS) -> Any:
    """Decode an uploaded image as an RGB ``PIL.Image``, or raise a clear 4xx error."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise NotAnImage(f"{name}: empty file; upload a JPEG, PNG, GIF, WebP, BMP or TIFF image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise UploadTooLarge(
                        f"{name}: {width}x{height} pixels is over this server's limit of {max_pixels:,} pixels"
                    )
                im.load()
                return im.convert("RGB")
    except (UploadTooLarge, NotAnImage):
        raise
    except UnidentifiedImageError:
        raise NotAnImage(f"{name}: not an image this server reads (it takes {', '.join(FORMATS)})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UploadTooLarge(f"{name}: refused as a possible decompression bomb ({err})") from None
    except (OSError, ValueError, SyntaxError) as err:
        from ..errors import InputError

        raise InputError(f"{name}: unreadable image ({err})") from None


def thumbnail_data_uri(image: Any, size: int = 160) -> str:
    """A small JPEG of a decoded image as a ``data:`` URI (the page shows the query image with it)."""
    import base64

    im = image.copy()
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class BodyLimit:
    """ASGI middleware: refuse a request body over ``max_bytes`` with 413, from its
    Content-Length at once, or as soon as a streamed body passes the limit."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Pass the request on, counting its body."""
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _too_large(send, limit)
            return
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    from fastapi import HTTPException

                    # FastAPI's HTTPException passes through its body parsing unchanged
                    raise HTTPException(413, _too_large_message(limit))
            return message

        await self.app(scope, counted, send)


def _too_large_message(limit: int) -> str:
    size = f"{limit / 2**20:.3g} MiB" if limit >= 2**20 else f"{limit / 2**10:.3g} KiB"
    return f"request body over this server's upload limit of {size}"


async def _too_large(send: Any, limit: int) -> None:
    import json

    body = json.dumps({"detail": _too_large_message(limit)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})

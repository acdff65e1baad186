"""Documents' media, served by document id only: the file the index recorded for that document,
when it is still a regular file whose real path (symlinks resolved) lies inside the corpus.

No path from a request ever reaches the file system: the request names a document id, the id
names a recorded path, and anything else is 404.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from ..ingest import SUFFIXES
from .state import NotFound, Served

#: Content types of the media served, by suffix (anything else is not served).
CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".webp": "image/webp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
}
#: Thumbnail edge lengths a client may ask for.
THUMBNAIL_SIZES = range(16, 1025)


def media_file(served: Served, doc_id: str, modality: str = "image") -> Path:
    """The real path of a document's recorded media file, or ``NotFound``."""
    recorded = served.document(doc_id).get(modality)
    missing = NotFound(f"document {doc_id!r} has no {modality} file to serve")
    if not recorded:
        raise missing
    suffix = Path(recorded).suffix.lower()
    if suffix not in SUFFIXES.get(modality, ()) or suffix not in CONTENT_TYPES or not os.path.isabs(recorded):
        raise missing
    real = Path(os.path.realpath(recorded))
    if not any(folder in served.media_roots for folder in real.parents) or not real.is_file():
        raise missing
    return real


def content_type(served: Served, doc_id: str, modality: str = "image") -> str:
    """The content type a document's media file is sent with: by its recorded name, whose suffix
    ``media_file`` checked (the real file may be a symlink to a name without one, as git-annex makes)."""
    return CONTENT_TYPES[Path(served.document(doc_id)[modality]).suffix.lower()]


def thumbnail(served: Served, doc_id: str, size: int) -> bytes:
    """A JPEG no larger than ``size`` on each side, of a document's image (cached per index)."""
    key = (doc_id, size)
    cached = served.thumbnails.get(key)
    if cached is not None:
        return cached
    path = media_file(served, doc_id, "image")
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.draft("RGB", (size * 2, size * 2))  # JPEG: decode at a reduced scale, much faster
                im = ImageOps.exif_transpose(im).convert("RGB")
                im.thumbnail((size, size))
                buf = io.BytesIO()
                im.save(buf, format="JPEG", quality=82, optimize=True)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise NotFound(f"document {doc_id!r}: its image cannot be read any more") from None
    data = buf.getvalue()
    served.thumbnails.put(key, data)
    return data

"""Media loading: a table from modality to the function that opens a file of it.

Images load with Pillow, audio (``audio.py``) and video (``video.py``) with their optional
libraries; documents of a modality a model has no tower for are skipped by the engine. A new
modality adds its suffixes and its loader here.

Image files come from users and from corpora nobody has looked at, so ``load_image`` checks an
image's size from its header before decoding it (see ``MAX_IMAGE_PIXELS``, ``MAX_ASPECT_RATIO``).
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError
from .audio import load_audio
from .video import load_video

#: File suffixes that identify each media modality (lower case).
SUFFIXES: dict[str, frozenset[str]] = {
    "image": frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}),
    "audio": frozenset({".wav", ".flac", ".mp3", ".ogg"}),
    "video": frozenset({".mp4", ".webm", ".mov", ".mkv"}),
}

#: Largest image (width × height) that is decoded. 64 megapixels is 8000×8000, above every common
#: camera (61 MP full frame); decoded as RGB it is 192 MB, and a batch holds up to 32 images before
#: the model's processor shrinks them to 224 pixels or so. A PNG of zeros that large is under 100 kB
#: on disk, so without this bound a tiny file costs gigabytes. Raise it here for larger scans.
MAX_IMAGE_PIXELS = 64_000_000

#: Largest ratio of an image's long side to its short side. CLIP processors scale the *short* side
#: to 224 and keep the ratio, so a 1×6000 strip becomes 224×1,344,000 floats per channel (3.4 GB
#: measured) before the centre crop keeps 224×224 of it. 20:1 admits panoramas (2:1 to 8:1),
#: banners (728×90) and long phone screenshots (1080×20000 is 18.5:1), and bounds that step to about
#: 224×4480 pixels.
MAX_ASPECT_RATIO = 20.0


def shown(path: str | Path) -> str:
    """A path as it can be printed: bytes that are not UTF-8 (surrogate escapes) become ``\\xNN``."""
    try:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    except (TypeError, ValueError):  # not a path at all, or a lone surrogate that no file system name has
        return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


def check_image_size(width: int, height: int, where: str) -> None:
    """Refuse an image that is empty, too large, or too long and thin to encode (see the limits above)."""
    if width < 1 or height < 1:
        raise InputError(f"{where}: image has no pixels ({width}×{height})")
    pixels = width * height
    if pixels > MAX_IMAGE_PIXELS:
        raise InputError(
            f"{where}: image is {width}×{height} = {pixels / 1e6:.1f} megapixels, above the limit of "
            f"{MAX_IMAGE_PIXELS / 1e6:g} megapixels; downscale it"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise InputError(
            f"{where}: image is {width}×{height}, an aspect ratio of {ratio:.0f}:1, above the limit of "
            f"{MAX_ASPECT_RATIO:g}:1 (encoders scale the short side up to their input size); crop or pad it"
        )


def check_regular_file(path: str | Path, what: str) -> None:
    """Refuse a path that is missing, unusable (a NUL character), or not a regular file.

    A FIFO or a device (``/dev/zero``) would block or never end when read, so it is refused before
    it is opened.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{shown(path)}: {what} file not found") from None
    except ValueError:  # "embedded null byte", or a name the file system cannot hold
        raise InputError(f"{shown(path)}: unusable {what} file name (it contains a NUL character)") from None
    except OSError as err:
        raise InputError(f"{shown(path)}: unreadable {what} file ({err.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise InputError(f"{shown(path)}: {what} path is {kind}")


def load_image(path: str | Path) -> Any:
    """Open an image file as an RGB ``PIL.Image``, with an error that names the file.

    The size is read from the header and checked (``check_image_size``) before any pixel is decoded.
    """
    from PIL import Image

    check_regular_file(path, "image")
    where = shown(path)
    try:
        # Pillow warns past its own limit and raises DecompressionBombError (not an OSError) past
        # twice that; here the warning is an error too, so nothing that large is ever decoded.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                check_image_size(width, height, where)
                im.load()
                return im.convert("RGB")
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # raised while the header is read, before the size can be checked here: take it from the message
        found = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(found[1]) / 1e6:.1f} megapixels" if found else "too large"
        raise InputError(
            f"{where}: image is {size}, above the limit of {MAX_IMAGE_PIXELS / 1e6:g} megapixels "
            "(Pillow refuses it as a possible decompression bomb); downscale it"
        ) from None
    except FileNotFoundError:
        raise InputError(f"{where}: image file not found") from None
    except Exception as err:
        # Pillow's decoders raise many kinds of error on malformed files (OSError, ValueError,
        # SyntaxError, EOFError, IndexError, struct.error...): each means this file cannot be read.
        raise InputError(f"{where}: unreadable image ({type(err).__name__}: {err})") from None


#: modality -> loader of one file of it
LOADERS: dict[str, Callable[[str | Path], Any]] = {"image": load_image, "audio": load_audio, "video": load_video}


def load_media(modality: str, item: Any) -> Any:
    """Load a media item given as a path; anything else (a PIL image, say) passes through.

    An image given already loaded is held to the same size limits as an image file.
    """
    if not isinstance(item, (str, Path)):
        size = getattr(item, "size", None)
        if modality == "image" and isinstance(size, tuple) and len(size) == 2:
            check_image_size(int(size[0]), int(size[1]), "image given in memory")
        return item
    if modality not in LOADERS:
        raise InputError(f"{shown(item)}: no loader for {modality} files in this version of mixsearch")
    return LOADERS[modality](item)


def media_kind(path: str | Path) -> str | None:
    """The media modality a file name's suffix says, or None."""
    suffix = Path(path).suffix.lower()
    return next((m for m, suffixes in SUFFIXES.items() if suffix in suffixes), None)

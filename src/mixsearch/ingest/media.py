"""Media loading: a table from modality to the function that opens a file of it.

Images load with Pillow, audio (``audio.py``) and video (``video.py``) with their optional
libraries; documents of a modality a model has no tower for are skipped by the engine. A new
modality adds its suffixes and its loader here.
"""

from __future__ import annotations

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


def load_image(path: str | Path) -> Any:
    """Open an image file as an RGB ``PIL.Image``, with an error that names the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise InputError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise InputError(f"{path}: unreadable image ({err})") from None


#: modality -> loader of one file of it
LOADERS: dict[str, Callable[[str | Path], Any]] = {"image": load_image, "audio": load_audio, "video": load_video}


def load_media(modality: str, item: Any) -> Any:
    """Load a media item given as a path; anything else (a PIL image, say) passes through."""
    if not isinstance(item, (str, Path)):
        return item
    if modality not in LOADERS:
        raise InputError(f"{item}: no loader for {modality} files in this version of mixsearch")
    return LOADERS[modality](item)


def media_kind(path: str | Path) -> str | None:
    """The media modality a file name's suffix says, or None."""
    suffix = Path(path).suffix.lower()
    return next((m for m, suffixes in SUFFIXES.items() if suffix in suffixes), None)

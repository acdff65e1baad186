"""Ingest: files on disk -> documents and calibration items (``corpus``); media files -> data (``media``)."""

from .corpus import (
    check_corpus,
    check_id,
    check_items,
    check_text,
    document_from_record,
    read_corpus,
    read_items,
    resolve,
)
from .media import (
    LOADERS,
    SUFFIXES,
    check_image_size,
    check_regular_file,
    load_image,
    load_media,
    media_kind,
    shown,
)

__all__ = [
    "LOADERS",
    "SUFFIXES",
    "check_corpus",
    "check_id",
    "check_image_size",
    "check_items",
    "check_regular_file",
    "check_text",
    "document_from_record",
    "load_image",
    "load_media",
    "media_kind",
    "read_corpus",
    "read_items",
    "resolve",
    "shown",
]

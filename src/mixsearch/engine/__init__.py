"""The engine: building an index folder (``build``) and searching it (``mixindex``), over the
on-disk layout (``store``) and the calibrate-and-fuse step (``fuse``)."""

from .build import BuildReport, build_index
from .mixindex import MixIndex, SearchResults, open_index

__all__ = ["BuildReport", "MixIndex", "SearchResults", "build_index", "open_index"]

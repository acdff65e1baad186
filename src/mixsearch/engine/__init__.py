"""The engine: building an index folder (``build``), changing it (``update``) and searching it
(``mixindex``), over the on-disk layout (``store``, its typed ``manifest``), the corpus reading and
encoding they share (``documents``) and the calibrate-and-fuse step (``fuse``)."""

from .build import build_index
from .manifest import Manifest
from .mixindex import MixIndex, SearchResults, open_index
from .reports import BuildReport, Report, UpdateReport

__all__ = [
    "BuildReport",
    "Manifest",
    "MixIndex",
    "Report",
    "SearchResults",
    "UpdateReport",
    "build_index",
    "open_index",
]

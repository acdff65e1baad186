"""mixsearch: mixed modality search with modality-gap calibration (GR-CLIP).

    import mixsearch as ms
    encoder = ms.load_encoder("mixclip-flickr8k")
    index, report = ms.build_index("corpus.jsonl", "my-index", encoder)   # calibrates on the corpus
    index.search("a dog running on the beach", k=5)                # -> [Hit, ...]
    index.search(["a dog", ms.Query(image="q.jpg")], k=5)           # -> SearchResults, one list each

The flow is ingest -> encoders/embedding -> calibration -> index -> engine -> eval/bench, one
package each, data flowing one way.
"""

from ._version import __version__
from .calibration import Calibrator, fit_calibration, load_calibration, save_calibration
from .encoders import Encoder, load_encoder
from .engine import BuildReport, Manifest, MixIndex, SearchResults, UpdateReport, build_index, open_index
from .errors import (
    BenchError,
    CalibrationError,
    FieldError,
    InputError,
    MissingDependencyError,
    MixsearchError,
    ModelError,
    UsageError,
    VectorIndexError,
)
from .index import ExactIndex, Filter, VectorIndex
from .ingest import read_corpus
from .types import Document, Hit, Problem, Query

__all__ = [
    "BenchError",
    "BuildReport",
    "CalibrationError",
    "Calibrator",
    "Document",
    "Encoder",
    "ExactIndex",
    "FieldError",
    "Filter",
    "Hit",
    "InputError",
    "Manifest",
    "MissingDependencyError",
    "MixIndex",
    "MixsearchError",
    "ModelError",
    "Problem",
    "Query",
    "SearchResults",
    "UpdateReport",
    "UsageError",
    "VectorIndex",
    "VectorIndexError",
    "__version__",
    "build_index",
    "fit_calibration",
    "load_calibration",
    "load_encoder",
    "open_index",
    "read_corpus",
    "save_calibration",
]

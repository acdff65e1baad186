"""mixsearch: mixed modality search with modality-gap calibration (GR-CLIP).

    import mixsearch as ms
    encoder = ms.load_encoder("mixclip-flickr8k")
    index, report = ms.build_index("corpus.jsonl", "my-index", encoder)   # calibrates on the corpus
    index.search("a dog running on the beach", k=5)                # -> [Hit, ...]
    index.search(["a dog", ms.Query(image="q.jpg")], k=5)           # -> SearchResults, one list each

The flow is ingest -> encoders/embedding -> calibration -> index -> engine -> eval/bench, one
package each, data flowing one way.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mixsearch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

from .calibration import Calibrator, fit_calibration, load_calibration, save_calibration  # noqa: E402
from .encoders import Encoder, load_encoder  # noqa: E402
from .engine import BuildReport, MixIndex, SearchResults, build_index, open_index  # noqa: E402
from .errors import (  # noqa: E402
    BenchError,
    CalibrationError,
    InputError,
    MissingDependencyError,
    MixsearchError,
    ModelError,
    UsageError,
    VectorIndexError,
)
from .index import ExactIndex, Filter, VectorIndex  # noqa: E402
from .ingest import read_corpus  # noqa: E402
from .types import Document, Hit, Problem, Query  # noqa: E402

__all__ = [
    "BenchError",
    "BuildReport",
    "CalibrationError",
    "Calibrator",
    "Document",
    "Encoder",
    "ExactIndex",
    "Filter",
    "Hit",
    "InputError",
    "MissingDependencyError",
    "MixIndex",
    "MixsearchError",
    "ModelError",
    "Problem",
    "Query",
    "SearchResults",
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

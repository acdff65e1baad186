"""mixsearch: mixed modality search with modality-gap calibration (GR-CLIP).

    import mixsearch as ms
    encoder = ms.load_encoder("mixclip-flickr8k")
    index, report = ms.build_index("corpus.jsonl", "my-index", encoder)   # calibrates on the corpus
    index.search("a dog running on the beach", k=5)

The flow is ingest -> encode -> calibrate -> index -> search -> evaluate, one module each.
"""

__version__ = "0.1.0"

from .calibrate import Calibrator, CalibrationError  # noqa: E402
from .calibration_file import load_calibration, save_calibration  # noqa: E402
from .encode import Encoder, ModelError, load_encoder  # noqa: E402
from .index import ExactIndex, VectorIndexError  # noqa: E402
from .ingest import Document, InputError, Problem, read_corpus  # noqa: E402
from .search import BuildReport, Hit, MixIndex, build_index, fit_calibration, open_index  # noqa: E402

__all__ = [
    "BuildReport", "Calibrator", "CalibrationError", "Document", "Encoder", "ExactIndex", "Hit",
    "InputError", "MixIndex", "ModelError", "Problem", "VectorIndexError", "build_index",
    "fit_calibration", "load_calibration", "load_encoder", "open_index", "read_corpus", "save_calibration",
]

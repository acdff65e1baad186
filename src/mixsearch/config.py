"""Where mixsearch keeps files between runs."""

from __future__ import annotations

import os
from pathlib import Path

#: The project's own models, shipped inside mixsearch (a bundled model's calibration ships beside its folder).
MODELS_DIR = Path(__file__).resolve().parent / "models"

#: Environment variable that moves the cache (embeddings, weight digests, screenshots).
CACHE_ENV = "MIXSEARCH_CACHE_DIR"


def cache_root() -> Path:
    """The cache folder: ``$MIXSEARCH_CACHE_DIR``, else ``~/.cache/mixsearch``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "mixsearch"))

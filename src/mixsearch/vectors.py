"""Plain numpy helpers on embedding rows, shared by every stage (it imports nothing of mixsearch)."""

from __future__ import annotations

from typing import Any

import numpy as np


def normalize(x: Any, dtype: Any = np.float32) -> np.ndarray:
    """L2-normalise the rows of ``x`` (the last axis) as ``dtype``; all-zero rows stay zero
    instead of becoming NaN."""
    x = np.asarray(x, dtype=dtype)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1)

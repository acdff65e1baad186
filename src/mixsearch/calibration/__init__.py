"""Calibration: the maths (``core``, numpy only), its file format (``io``), and fitting it from
files or items (``fit``)."""

from .core import METHODS, Calibrator, RunningMean, normalize
from .fit import fit_calibration
from .io import load_calibration, save_calibration, shipped_calibration

__all__ = [
    "METHODS",
    "Calibrator",
    "RunningMean",
    "fit_calibration",
    "load_calibration",
    "normalize",
    "save_calibration",
    "shipped_calibration",
]

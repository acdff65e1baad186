"""The calibration file: a small safetensors file of per-role statistics plus metadata.

Tensors ``mean.<role>`` hold the means, ``std.<role>`` the per-dimension standard deviations
(``standardize``), ``score_mean.<modality>`` and ``score_std.<modality>`` the score statistics of
each document modality (``zscore``). The metadata records the method and its parameters (alpha,
``lambda`` of ``shift``, ``rrf_k``), the model the statistics belong to (name, fingerprint,
dimension), how many items each mean saw, and where they came from, so a file can be checked
before it is applied. Files written before the other methods existed (means only) still load.

Optionally, a relevance map (``calibration.relevance``): tensors ``relevance.<modality>.<param>``
and a ``relevance`` metadata entry (kind, counts, notes, what it was fitted on). Files without one
load as before; readers that predate it ignore it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config import MODELS_DIR
from ..errors import CalibrationError, MixsearchError
from .core import RRF_K, Calibrator
from .relevance import RelevanceMap

FORMAT = "mixsearch-calibration/1"


def save_calibration(calibrator: Calibrator, path: str | Path, *, provenance: dict | None = None) -> Path:
    """Write a calibration file (``provenance`` defaults to the calibrator's own)."""
    from safetensors.numpy import save_file

    calibrator.check_params()  # a file that would not load is not written
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"mean.{role}": np.ascontiguousarray(m, dtype=np.float32) for role, m in calibrator.means_.items()}
    tensors.update({f"std.{role}": np.ascontiguousarray(s, dtype=np.float32) for role, s in calibrator.stds_.items()})
    for modality, (mu, sigma) in calibrator.score_stats_.items():
        tensors[f"score_mean.{modality}"] = np.array([mu], dtype=np.float64)
        tensors[f"score_std.{modality}"] = np.array([sigma], dtype=np.float64)
    meta = {
        "format": FORMAT,
        "method": calibrator.method,
        # floats, as 0.3 wrote them: readers parse them with float()
        "alpha": repr(float(calibrator.alpha)),
        "lambda": repr(float(calibrator.shift_lambda)),
        "rrf_k": repr(float(calibrator.rrf_k)),
        "model": json.dumps(dict(calibrator.fitted_for or {})),
        "counts": json.dumps(calibrator.counts_),
        "dim": str(calibrator.dim_ or ""),
        "provenance": json.dumps(dict(calibrator.provenance or {}) if provenance is None else provenance),
        "zero_roles": json.dumps(sorted(calibrator.zero_roles)),
    }
    _store_relevance(calibrator, tensors, meta)
    if not tensors:  # safetensors wants at least one tensor; the 'none' method has no means
        tensors = {"empty": np.zeros(1, dtype=np.float32)}
    save_file(tensors, str(path), metadata=meta)
    return path


def load_calibration(path: str | Path) -> Calibrator:
    """Read a calibration file; ``calibrator.provenance`` holds what the file says of its origin."""
    from safetensors import SafetensorError, safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"{path}: no such calibration file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CalibrationError(f"{path}: not a calibration file ({err})") from None
    if meta.get("format") != FORMAT:
        raise CalibrationError(f"{path}: not a mixsearch calibration file (format {meta.get('format')!r})")
    try:  # a crafted or damaged file must fail here, naming it, not later in a search
        counts = json.loads(meta.get("counts", "{}"))
        means = {key[len("mean.") :]: value for key, value in tensors.items() if key.startswith("mean.")}
        stats = {
            key[len("score_mean.") :]: (float(value[0]), float(tensors[f"score_std.{key[len('score_mean.') :]}"][0]))
            for key, value in tensors.items()
            if key.startswith("score_mean.")
        }
        cal = Calibrator.from_statistics(
            means,
            {role: int(counts.get(role, 1)) for role in means},
            stds={role: tensors[f"std.{role}"] for role in means if f"std.{role}" in tensors},
            score_stats=stats,
            relevance=_load_relevance(tensors, meta),
            method=meta["method"],
            alpha=float(meta.get("alpha", "0.5")),
            shift_lambda=float(meta.get("lambda", "1.0")),
            rrf_k=float(meta.get("rrf_k", repr(float(RRF_K)))),
            fitted_for=json.loads(meta.get("model", "{}")),
            provenance=json.loads(meta.get("provenance", "{}")),
            zero_roles=json.loads(meta.get("zero_roles", "[]")),
        )
    except (MixsearchError, KeyError, TypeError, ValueError, IndexError) as err:
        raise CalibrationError(f"{path}: unusable calibration file ({err})") from None
    return cal


# -- the optional relevance map (calibration.relevance) ----------------------------------------


def _store_relevance(calibrator: Calibrator, tensors: dict, meta: dict) -> None:
    if calibrator.relevance_ is not None:
        extra, record = calibrator.relevance_.to_stored()
        tensors.update(extra)
        meta["relevance"] = json.dumps(record)


def _load_relevance(tensors: dict, meta: dict) -> RelevanceMap | None:
    if "relevance" not in meta:
        return None
    try:
        return RelevanceMap.from_stored(tensors, json.loads(meta["relevance"]))
    except CalibrationError as err:
        raise CalibrationError(f"relevance map: {err}") from None


def shipped_calibration(model: str) -> Path | None:
    """The calibration file shipped beside a bundled model (``models/<name>.calibration.safetensors``),
    kept outside the model folder so it never changes the model's weight fingerprint."""
    path = MODELS_DIR / f"{Path(model).name}.calibration.safetensors"
    return path if path.is_file() else None

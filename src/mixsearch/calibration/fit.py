"""Fitting a calibration from files or item lists: encode each role's items (through the
embedding cache, streaming) and fit the ``Calibrator``'s means."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from ..embedding import embed, open_cache
from ..encoders import Encoder
from ..errors import CalibrationError
from ..ingest import read_items
from ..types import PART_ROLES, Problem
from .core import RRF_K, Calibrator

CHUNK = 4096  # items encoded per step: bounds memory, and progress is saved per batch

#: A role's calibration items: a file or folder (see ``ingest.read_items``), or items in memory.
Source = str | Path | Sequence[str | Path]


def fit_calibration(
    encoder: Encoder,
    sources: Mapping[str, Source],
    *,
    method: str = "mean",
    alpha: float = 0.5,
    shift_lambda: float = 1.0,
    rrf_k: float = RRF_K,
    cache_dir: str | Path | None = None,
    report: Callable[[Problem], None] | None = None,
    progress: bool | None = None,
) -> Calibrator:
    """Fit the statistics of ``method`` (one mean per role, ...; see ``Calibrator``, whose
    parameters ``alpha``, ``shift_lambda`` and ``rrf_k`` are) from ``sources = {role: items}``,
    streaming in constant memory.

    Roles are ``query``, ``text``, ``image``, ``audio``, ``video``. Items are a text file (one
    per line) or JSON Lines with a ``text`` field for ``query``/``text``; a folder or JSON Lines
    with an ``image`` (``audio``, ``video``) field for media; or a list of texts or media paths.
    """
    unknown = set(sources) - set(PART_ROLES)
    if unknown:
        raise CalibrationError(
            f"unknown calibration role(s) {', '.join(sorted(unknown))}; expected {', '.join(PART_ROLES)}"
        )
    if isinstance(sources.get("multimodal"), (str, Path)):
        raise CalibrationError("multimodal calibration items are (text, image path) pairs given in a list")
    given: dict[str, Path | Sequence[str | Path]] = {
        role: items if isinstance(items, (list, tuple)) else Path(items)  # type: ignore[arg-type]
        for role, items in sources.items()
        if items is not None
    }
    if method != "none" and not given:
        raise CalibrationError("nothing to fit: give query, text or image calibration items")
    provenance = {
        "fitted_on": {
            role: f"{len(p)} items given in memory" if isinstance(p, (list, tuple)) else str(p)
            for role, p in given.items()
        }
    }
    cal = Calibrator(
        method=method,
        alpha=alpha,
        shift_lambda=shift_lambda,
        rrf_k=rrf_k,
        provenance=provenance,
        fitted_for={"name": encoder.name, "fingerprint": encoder.fingerprint, "dim": str(encoder.dim)},
    ).check_params()
    if method == "none":
        return cal
    cache = open_cache(encoder, cache_dir)
    try:
        for role, source in given.items():
            modality = "text" if role == "query" else role
            items = read_items(source, modality, report or _ignore) if isinstance(source, Path) else source
            for batch in batched(items, CHUNK):
                out = embed(
                    encoder, batch, modality, cache=cache, report=report, progress=progress, query=role == "query"
                )
                cal.partial_fit(out.vectors[out.ok], role)
            if role not in cal.counts_:
                what = f"the {len(source)} items given" if isinstance(source, (list, tuple)) else str(source)
                raise CalibrationError(f"{what}: no usable {role} items to fit a mean on")
    finally:
        cache.close()
    _check_method_inputs(cal)
    return cal


def _check_method_inputs(cal: Calibrator) -> None:
    """Methods that need several roles say so now, not when an index first uses them."""
    fitted = set(cal.counts_)
    if cal.method == "shift" and not ("text" in fitted and fitted & {"image", "audio", "video"}):
        raise CalibrationError(
            "method 'shift' needs document texts and images (audio, video) to find the gap vector; "
            f"given: {', '.join(sorted(fitted))}"
        )
    if cal.method == "zscore" and not cal.score_stats_:
        raise CalibrationError(
            "method 'zscore' needs queries and document texts or images to fit score statistics; "
            f"given: {', '.join(sorted(fitted))}"
        )


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _ignore(_: Problem) -> None:
    pass

"""From raw embeddings to the vectors an index searches: resolve what the user asked for as a
calibration, then calibrate and fuse each document's parts, a chunk at a time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..calibration import Calibrator, load_calibration
from ..errors import CalibrationError
from ..types import MODALITIES, ROLES

CHUNK = 4096  # documents calibrated and fused per step: bounds memory

#: What ``build_index`` and ``MixIndex.with_calibration`` accept as a calibration: a
#: ``Calibrator``, a calibration file, ``"none"`` (plain CLIP), or None / ``"corpus"`` (fit
#: document means on the corpus).
CalibrationSpec = Calibrator | str | Path | None


def prepare_calibration(
    calibration: CalibrationSpec, model: Mapping, alpha: float, method: str | None = None
) -> tuple[Calibrator | None, str]:
    """Everything about a calibration that can be checked before any encoding: a ``Calibrator``
    (never changed: the index gets a new one at ``alpha``), a file (loaded) or ``"none"``, checked
    against ``model`` (its manifest record: name, fingerprint, dim). None means "fit on the
    corpus": ``(None, "corpus")``. ``method``: apply the calibration's statistics under this
    method instead of its own."""
    Calibrator(method or "mean", alpha).check_params()  # an unknown method or impossible alpha fails here
    if calibration is None or (isinstance(calibration, str) and calibration == "corpus"):
        return None, "corpus"
    if isinstance(calibration, Calibrator):
        cal, source = calibration.check_params(), "given"
    elif str(calibration) == "none":
        cal, source = Calibrator("none"), "none"
    else:
        cal, source = load_calibration(calibration), str(calibration)
    if method is not None and method != cal.method:
        cal = cal.with_method(method)
    # the index's own copy, its records plain dicts (a Calibrator() may leave them None)
    fitted_for = dict(cal.fitted_for or {})
    cal = cal.with_params(alpha=float(alpha), fitted_for=fitted_for, provenance=dict(cal.provenance or {}))
    if cal.method != "none":
        if cal.method != "rrf" and not fitted_for.get("fingerprint"):  # rrf fits nothing
            raise CalibrationError(
                f"the calibration ({source}) does not say which model its means belong to, so it cannot be "
                "checked against this index's model; fit it with mixsearch.fit_calibration (or "
                "'mixsearch calibrate'), or give Calibrator(fitted_for=encoder.info())"
            )
        cal.check_model(model["fingerprint"], model["name"])
        if cal.dim_ is not None and cal.dim_ != int(model["dim"]):
            raise CalibrationError(f"the calibration's means have dimension {cal.dim_}; the model's is {model['dim']}")
    return cal, source


def require_roles(
    cal: Calibrator, modalities: Iterable[str], dim: int, document_modalities: Iterable[str] = ()
) -> None:
    """Refuse a calibration that lacks what this index needs: a mean per part modality and
    queries' (for ``zscore``: score statistics per document modality)."""
    cal.require(("query", *sorted(set(modalities))), dim, sorted(set(document_modalities)))


def with_joint(present: Mapping[str, np.ndarray], raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``present`` plus, when ``raw`` has jointly encoded image+text documents (a VLM's
    ``multimodal`` part), which rows they are: those with both a text and an image."""
    out = dict(present)
    if "multimodal" in raw and "multimodal" not in out:
        out["multimodal"] = np.asarray(out["text"], dtype=bool) & np.asarray(out["image"], dtype=bool)
    return out


def document_modalities(present: Mapping[str, np.ndarray]) -> set[str]:
    """The document modalities (``multimodal`` for several parts) of the rows ``present`` marks."""
    present = {m: p for m, p in present.items() if m != "multimodal"}  # a joint vector is no extra part
    if not present:
        return set()
    parts = np.sum([np.asarray(p, dtype=np.int64) for p in present.values()], axis=0)
    out = {"multimodal"} if (parts > 1).any() else set()
    return out | {m for m, p in present.items() if (np.asarray(p) & (parts == 1)).any()}


def resolve_calibration(
    calibration: CalibrationSpec,
    model: Mapping,
    raw: Mapping[str, np.ndarray],
    present: Mapping[str, np.ndarray],
    alpha: float,
    notes: list[str],
    method: str | None = None,
) -> tuple[Calibrator, str]:
    """The calibrator for an index of ``model``, and a word on its source (``given``, ``corpus``,
    ``none`` or the file). With None, document statistics are fitted on ``raw`` (the rows
    ``present`` marks) for ``method`` (default ``mean``). Every mean the index needs must be there."""
    cal, source = prepare_calibration(calibration, model, alpha, method)
    present = with_joint(present, raw)
    if cal is None:
        cal = fit_on_corpus(model, raw, present, notes, method or "mean", alpha)
    require_roles(cal, [m for m in raw if present[m].any()], int(model["dim"]), document_modalities(present))
    return cal, source


def fit_on_corpus(
    model: Mapping,
    raw: Mapping[str, np.ndarray],
    present: Mapping[str, np.ndarray],
    notes: list[str],
    method: str = "mean",
    alpha: float = 0.5,
) -> Calibrator:
    """Document statistics fitted on the indexed documents themselves; queries borrow the text's."""
    fitted_for = {"name": model["name"], "fingerprint": model["fingerprint"], "dim": str(model["dim"])}
    present = with_joint(present, raw)
    if method in ("none", "rrf"):  # nothing to fit
        notes.append(f"calibration method {method!r}: nothing fitted on the corpus")
        return Calibrator(
            method, alpha, fitted_for=fitted_for, provenance={"fitted_on": "nothing (method fits no statistics)"}
        )
    cal = Calibrator(method, alpha, fitted_for=fitted_for)
    for m, matrix in raw.items():
        for start in range(0, len(matrix), CHUNK):
            block = np.asarray(matrix[start : start + CHUNK])
            cal.partial_fit(block[present[m][start : start + CHUNK]], m)
    note = "no calibration given: document means were fitted on this corpus"
    query_mean = "borrowed from the document-text mean"
    if "text" in cal.counts_:
        cal = cal.with_role("query", "text")
        note += "; queries borrow the document-text mean (fit a query mean with `mixsearch calibrate --queries`)"
    else:
        query_mean = "none (no text documents): text queries are not calibrated"
    # a role with nothing to fit on stays plain (mean zero), so every query kind the model takes
    # still works (an audio query on a text-only index of an audio model, say)
    encodes = set(model.get("modalities") or ("text", "image")) & set(MODALITIES)
    zero_roles = tuple(r for r in ROLES if r in ({"query", "text"} | encodes) - set(cal.counts_))
    if zero_roles:
        note += f"; no {', '.join(zero_roles)} items here: those stay uncalibrated (mean zero)"
    notes.append(note)
    provenance = {"fitted_on": "the indexed corpus (document means)", "query_mean": query_mean}
    return cal.with_params(zero_roles=zero_roles, provenance=provenance)


def fuse_documents(
    calibrator: Calibrator,
    alpha: float,
    raw: Mapping[str, np.ndarray],
    present: Mapping[str, np.ndarray],
    n: int,
    dim: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Calibrated, fused vectors of ``n`` documents, written into ``out`` (e.g. a memory map) or a new array.

    A jointly encoded image+text document (``raw["multimodal"]``, a VLM's) is its one vector,
    calibrated with the ``multimodal`` mean; its text and image parts are not fused."""
    vectors = np.zeros((n, dim), dtype=np.float32) if out is None else out
    present = with_joint(present, raw)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        parts = {m: np.asarray(raw[m][start:stop]) for m in raw if m != "multimodal"}
        mask = {m: present[m][start:stop] for m in parts}
        vectors[start:stop] = calibrator.transform_documents(parts, mask, alpha=alpha) if parts else 0
        if "multimodal" in raw:
            rows = np.flatnonzero(present["multimodal"][start:stop])
            if len(rows):
                joint = np.asarray(raw["multimodal"][start:stop])[rows]
                vectors[start + rows] = calibrator.transform(joint, role="multimodal")
    return vectors


def presence(documents: Mapping[str, list], modalities: tuple[str, ...] = MODALITIES) -> dict[str, np.ndarray]:
    """Which documents have each part, from the document table's columns."""
    return {m: np.array([v is not None for v in documents[m]], dtype=bool) for m in modalities if m in documents}

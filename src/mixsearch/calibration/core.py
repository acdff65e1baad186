"""The calibration maths: close the modality gap by subtracting per-role mean embeddings (GR-CLIP).

Plain array code: it imports numpy and mixsearch's error and name modules, and no model, file or
index code (a test checks its imports). The contract (DEVELOPERS.md):

    query       q  ->  normalise(q - m_q)
    text doc    t  ->  normalise(t - m_t)
    image doc   i  ->  normalise(i - m_i)
    image+text     ->  normalise(a (t - m_t) + (1 - a) (i - m_i)),  a = 0.5 by default

Method ``none`` is the same pipeline with every mean zero (plain CLIP), ``mean`` is GR-CLIP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CalibrationError, UsageError
from ..types import ROLES

if TYPE_CHECKING:
    from .relevance import RelevanceMap

#: ``none``: plain CLIP (every mean zero); ``mean``: GR-CLIP.
METHODS = ("none", "mean")


def normalize(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows; all-zero rows stay zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


class RunningMean:
    """Mean of rows seen in batches, in constant memory (float64 sum and a count)."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.count = 0

    def update(self, x: np.ndarray) -> None:
        """Add a ``(n, d)`` batch of rows."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise CalibrationError(f"expected a 2-D batch of embeddings, got shape {x.shape}")
        if len(x) == 0:
            return
        if not np.isfinite(x).all():
            raise CalibrationError("embeddings with NaN or infinite values cannot be averaged into a mean")
        if self.total is None:
            self.total = np.zeros(x.shape[1])
        elif x.shape[1] != self.total.shape[0]:
            raise CalibrationError(f"embedding dimension {x.shape[1]} != {self.total.shape[0]} seen before")
        self.total += x.sum(axis=0)
        self.count += len(x)

    @property
    def mean(self) -> np.ndarray:
        """The mean of every row seen (float32)."""
        if self.total is None:
            raise CalibrationError("no embeddings seen")
        return (self.total / self.count).astype(np.float32)


class Calibrator:
    """Modality-gap calibration in the scikit-learn manner.

    >>> cal = Calibrator().fit({"query": Q, "text": T, "image": I})
    >>> cal.transform(Q, role="query")                      # calibrated queries
    >>> cal.transform_documents({"text": T, "image": I})    # fused documents

    Parameters
    ----------
    method : ``"mean"`` (GR-CLIP) or ``"none"`` (plain CLIP, all means zero).
    alpha : weight of the text part in a multimodal document (the default of ``transform_documents``).
    fitted_for : the model the means belong to (``name``, ``fingerprint``, ``dim``); a calibration
        that names a model refuses embeddings of another (``check_model``).
    provenance : where the means came from; recorded in calibration files.
    zero_roles : roles deliberately left uncalibrated (their mean is zero).

    Fitted attributes: ``means_`` and ``counts_`` (per role), ``dim_``. ``fit`` forgets earlier fits.
    ``relevance_``: an optional ``RelevanceMap`` from scores under this calibration to estimated
    relevance (``calibration.relevance``); ``fit`` drops it, since new means change the scores.
    """

    def __init__(
        self,
        method: str = "mean",
        alpha: float = 0.5,
        *,
        fitted_for: Mapping[str, str] | None = None,
        provenance: Mapping | None = None,
        zero_roles: Iterable[str] = (),
    ) -> None:
        if method not in METHODS:
            raise UsageError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
        self.method = method
        self.alpha = _check_alpha(alpha)
        self.fitted_for: dict[str, str] = dict(fitted_for or {})
        self.provenance: dict = dict(provenance or {})
        self.zero_roles: set[str] = set(zero_roles)
        for role in self.zero_roles:
            _check_role(role)
        self._running: dict[str, RunningMean] = {}
        self.relevance_: RelevanceMap | None = None

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, embeddings: Mapping[str, np.ndarray]) -> Calibrator:
        """Fit one mean per role from ``{role: (n, d) embeddings}``, forgetting earlier fits."""
        self._running = {}
        self.relevance_ = None
        for role, x in embeddings.items():
            self.partial_fit(x, role)
        return self

    def partial_fit(self, x: np.ndarray, role: str) -> Calibrator:
        """Add a batch of raw (normalised) embeddings of one role to its running mean."""
        _check_role(role)
        if self.method == "none":
            return self
        self._running.setdefault(role, RunningMean()).update(x)
        dims = {r.total.shape[0] for r in self._running.values() if r.total is not None}
        if len(dims) > 1:
            raise CalibrationError(f"role {role!r} has dimension {np.shape(x)[1]}, other roles {sorted(dims)}")
        return self

    def set_mean(self, role: str, mean: np.ndarray, count: int) -> Calibrator:
        """Use a given mean for a role (loading a file, or borrowing another role's mean)."""
        _check_role(role)
        if count < 1:
            raise CalibrationError(f"a mean needs a positive item count, got {count} for {role!r}")
        if np.ndim(mean) != 1 or not np.isfinite(mean).all():
            raise CalibrationError(f"the {role!r} mean must be a vector of finite numbers (not NaN or infinity)")
        running = RunningMean()
        running.total = np.asarray(mean, dtype=np.float64) * count
        running.count = count
        self._running[role] = running
        return self

    @property
    def means_(self) -> dict[str, np.ndarray]:
        """The fitted mean of each role."""
        return {role: r.mean for role, r in self._running.items() if r.count}

    @property
    def counts_(self) -> dict[str, int]:
        """How many embeddings each role's mean saw."""
        return {role: r.count for role, r in self._running.items() if r.count}

    @property
    def dim_(self) -> int | None:
        """The embedding dimension of the fitted means (None before fitting)."""
        means = self.means_
        return next(iter(means.values())).shape[0] if means else None

    # -- applying --------------------------------------------------------------------------

    def mean(self, role: str, dim: int) -> np.ndarray:
        """The mean subtracted for ``role`` (zeros for method ``none`` and for ``zero_roles``)."""
        _check_role(role)
        means = self.means_
        if self.method == "none" or (role in self.zero_roles and role not in means):
            return np.zeros(dim, dtype=np.float32)
        if role not in means:
            fitted = ", ".join(sorted(means)) or "none"
            items = "queries" if role == "query" else f"document {role}s"
            raise CalibrationError(
                f"this calibration has no {role!r} mean (fitted: {fitted}); fit one on {items} with "
                f"'mixsearch calibrate' and apply it with 'mixsearch recalibrate INDEX --calibration FILE'"
            )
        if means[role].shape[0] != dim:
            raise CalibrationError(
                f"embedding dimension {dim} does not match the calibration's {means[role].shape[0]}"
                f"{_model_hint(self.fitted_for)}"
            )
        return means[role]

    def centre(self, x: np.ndarray, role: str) -> np.ndarray:
        """``x - m_role``, not re-normalised (the building block of fusion)."""
        x = np.asarray(x, dtype=np.float32)
        return x - self.mean(role, x.shape[-1])

    def transform(self, x: np.ndarray, role: str = "query") -> np.ndarray:
        """Calibrate single-modality embeddings: ``normalise(x - m_role)``."""
        return normalize(self.centre(x, role))

    def transform_documents(
        self,
        parts: Mapping[str, np.ndarray],
        present: Mapping[str, np.ndarray] | None = None,
        *,
        alpha: float | None = None,
        roles: Mapping[str, str] | None = None,
    ) -> np.ndarray:
        """Calibrate and fuse documents made of several parts.

        ``parts`` maps a modality to an ``(n, d)`` array of raw embeddings, one row per document;
        ``present[m]`` says which rows have that part (default: the non-zero rows). A document's
        text part weighs ``alpha`` and its other parts share ``1 - alpha``; a document without
        text weighs its parts equally. The weighted sum is re-normalised. ``roles`` says whose
        mean each part takes (default: its own modality; an image+text *query* passes
        ``{"text": "query"}``).
        """
        alpha = self.alpha if alpha is None else _check_alpha(alpha)
        if not parts:
            raise CalibrationError("no document parts given")
        arrays = {m: np.asarray(x, dtype=np.float32) for m, x in parts.items()}
        shapes = {x.shape for x in arrays.values()}
        if len(shapes) != 1:
            raise CalibrationError(f"document parts differ in shape: {sorted(shapes)}")
        n = next(iter(shapes))[0]
        if present is None:
            present = {m: np.any(x != 0, axis=1) for m, x in arrays.items()}
        mask = {m: np.asarray(present[m], dtype=bool) for m in arrays}
        has_text = mask.get("text", np.zeros(n, dtype=bool))
        others = sum((mask[m].astype(np.float32) for m in arrays if m != "text"), np.zeros(n, np.float32))
        fused = np.zeros(next(iter(shapes)), dtype=np.float32)
        for m, x in arrays.items():
            if not mask[m].any():
                continue  # no document has this part: it needs no mean
            if m == "text":
                # alone, text takes the whole weight; beside other parts, alpha of it
                w = np.where(others > 0, alpha, 1.0)
            else:
                w = np.where(has_text, (1.0 - alpha) / np.maximum(others, 1), 1.0 / np.maximum(others, 1))
            w = np.where(mask[m], w, 0.0).astype(np.float32)
            fused += w[:, None] * self.centre(x, (roles or {}).get(m, m))
        return normalize(fused)

    def check_model(self, fingerprint: str, name: str = "") -> None:
        """Refuse embeddings from a model other than the one the means were fitted on."""
        mine = self.fitted_for.get("fingerprint")
        if self.method != "none" and mine and mine != fingerprint:
            raise CalibrationError(
                f"this calibration was fitted on model {self.fitted_for.get('name', '?')!r} "
                f"(fingerprint {mine}); it cannot be applied to embeddings of "
                f"{name or 'another model'!r} (fingerprint {fingerprint}). Fit one for that model."
            )

    def __repr__(self) -> str:
        counts = ", ".join(f"{r}={c}" for r, c in self.counts_.items())
        return f"Calibrator(method={self.method!r}, alpha={self.alpha}, counts: {counts or 'unfitted'})"


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")


def _check_alpha(alpha: float) -> float:
    if not 0.0 <= float(alpha) <= 1.0:  # also refuses NaN
        raise UsageError(f"alpha must be in [0, 1], got {alpha}")
    return float(alpha)


def _model_hint(fitted_for: Mapping[str, str]) -> str:
    name = fitted_for.get("name")
    return f" (it was fitted on model {name!r}: is this another model?)" if name else ""

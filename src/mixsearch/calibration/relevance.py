"""From a search score to an estimate of relevance, per document modality.

Cosine scores do not mean the same for every modality: a text document and an image document
equally relevant to a query can score 0.2 apart (the modality gap; calibration narrows it, not
always to nothing). A ``RelevanceMap`` is fitted on labelled (query, document) pairs, one monotone
mapping per document modality, so that one threshold on its output ("relevance >= 0.5") cuts every
modality at the same estimated precision.

Applying a fitted map is plain numpy from stored parameters (isotonic: breakpoints and
``np.interp``; Platt: ``a``, ``b`` of a logistic); only ``fit`` uses scikit-learn, imported when
called, so searching with a map needs no scikit-learn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Union

import numpy as np

from ..errors import CalibrationError, UsageError, require

#: Numbers or labels, one per pair: a sequence or a numpy array.
ArrayLike = Union[Sequence, np.ndarray]

#: ``isotonic`` (default): a non-decreasing step function; ``platt``: a logistic of the score.
KINDS = ("isotonic", "platt")
#: The key of the map fitted on every modality's pairs together: the fallback for a modality
#: with too few labelled pairs to fit its own, and for modalities unseen while fitting.
POOLED = "*"


class RelevanceMap:
    """Per-modality score -> relevance mapping, in the scikit-learn manner.

    >>> rel = RelevanceMap().fit(scores, labels, modalities)
    >>> rel.predict(scores, modalities)        # estimates in [0, 1]

    Parameters
    ----------
    kind : ``"isotonic"`` (default) or ``"platt"``. Isotonic regression assumes only that relevance
        does not fall as the score rises, which is what ranking by score already assumes; with the
        hundreds of pairs per modality a bench split gives, it follows the data where a logistic's
        fixed shape would not (per-modality score distributions are not sigmoid-shaped in general).
        Platt scaling needs fewer pairs and is smooth; choose it for small labelled sets.
    min_positives, min_negatives : fewest relevant / non-relevant pairs a modality needs for a
        map of its own; a modality with fewer uses the pooled map (recorded in ``notes_``).

    Fitted attributes: ``params_`` (modality -> ``{"x", "y"}`` breakpoints or ``{"a", "b"}``),
    ``counts_`` (modality -> positives, negatives), ``notes_``, and ``info`` (free-form metadata
    the fitter records: dataset, queries, calibration).
    """

    def __init__(self, kind: str = "isotonic", *, min_positives: int = 10, min_negatives: int = 10) -> None:
        if kind not in KINDS:
            raise UsageError(f"unknown relevance map kind {kind!r}; expected one of {', '.join(KINDS)}")
        self.kind = kind
        self.min_positives = int(min_positives)
        self.min_negatives = int(min_negatives)
        self.params_: dict[str, dict[str, np.ndarray]] = {}
        self.counts_: dict[str, dict[str, int]] = {}
        self.notes_: list[str] = []
        self.info: dict = {}

    # -- fitting (scikit-learn) ---------------------------------------------------------------

    def fit(self, scores: ArrayLike, labels: ArrayLike, modalities: ArrayLike) -> RelevanceMap:
        """Fit one map per document modality from pairs' scores, 0/1 relevance labels (any
        positive number counts as relevant) and the documents' modalities; plus the pooled map."""
        s = np.asarray(scores, dtype=np.float64).ravel()
        y = (np.asarray(labels, dtype=np.float64).ravel() > 0).astype(np.float64)
        mods = np.asarray(modalities, dtype=object).ravel()
        if not (len(s) == len(y) == len(mods)):
            raise CalibrationError(f"{len(s)} scores, {len(y)} labels and {len(mods)} modalities: one each per pair")
        if not np.isfinite(s).all():
            raise CalibrationError("relevance map: scores with NaN or infinity")
        self.params_, self.counts_, self.notes_ = {}, {}, []
        pos, neg = int(y.sum()), int(len(y) - y.sum())
        if pos < self.min_positives or neg < self.min_negatives:
            raise CalibrationError(
                f"too few labelled pairs to fit a relevance map: {pos} relevant and {neg} non-relevant "
                f"(at least {self.min_positives} and {self.min_negatives} needed); use more judged queries"
            )
        self.params_[POOLED] = self._fit_one(s, y)
        self.counts_[POOLED] = {"positives": pos, "negatives": neg}
        for m in sorted(set(mods.tolist())):
            mine = mods == m
            pos, neg = int(y[mine].sum()), int(mine.sum() - y[mine].sum())
            self.counts_[str(m)] = {"positives": pos, "negatives": neg}
            if pos < self.min_positives or neg < self.min_negatives:
                self.notes_.append(
                    f"{m}: {pos} relevant and {neg} non-relevant pairs, fewer than {self.min_positives} / "
                    f"{self.min_negatives}: uses the map pooled over all modalities"
                )
                continue
            self.params_[str(m)] = self._fit_one(s[mine], y[mine])
        return self

    def _fit_one(self, s: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        require("sklearn", "bench", "fitting a relevance map")  # an extra: say which, not a bare ImportError
        if self.kind == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(s, y)
            return {"x": np.asarray(iso.X_thresholds_, np.float64), "y": np.asarray(iso.y_thresholds_, np.float64)}
        from sklearn.linear_model import LogisticRegression

        # unpenalised: cosines span a narrow range, so the slope is large and L2 would shrink it
        lr = LogisticRegression(C=np.inf).fit(s[:, None], y)
        return {"a": np.array([lr.coef_[0, 0]]), "b": np.array([lr.intercept_[0]])}

    # -- applying (numpy) ---------------------------------------------------------------------

    @property
    def modalities_(self) -> list[str]:
        """The modalities with a map of their own."""
        return sorted(m for m in self.params_ if m != POOLED)

    def source(self, modality: str) -> str:
        """Which map a modality uses: its own, or the pooled one (``*``)."""
        return modality if modality in self.params_ else POOLED

    def predict(self, scores: ArrayLike, modalities: ArrayLike | str) -> np.ndarray:
        """Estimated relevance in [0, 1] of each score, by its document's modality (one modality
        string applies to all)."""
        if not self.params_:
            raise CalibrationError("this relevance map is not fitted")
        s = np.asarray(scores, dtype=np.float64).ravel()
        mods = np.full(len(s), modalities, dtype=object) if isinstance(modalities, str) else np.asarray(modalities)
        if len(mods) != len(s):
            raise CalibrationError(f"{len(s)} scores and {len(mods)} modalities")
        out = np.empty(len(s), dtype=np.float64)
        for m in set(mods.tolist()):
            mine = mods == m
            out[mine] = self._apply(self.params_[self.source(str(m))], s[mine])
        return out

    def _apply(self, p: Mapping[str, np.ndarray], s: np.ndarray) -> np.ndarray:
        if self.kind == "isotonic":
            return np.interp(s, p["x"], p["y"])  # clips beyond the ends, as out_of_bounds="clip"
        z = float(p["a"][0]) * s + float(p["b"][0])
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic, without overflow for large |z|

    # -- storing --------------------------------------------------------------------------------

    def to_stored(self) -> tuple[dict[str, np.ndarray], dict]:
        """Tensors (``relevance.<modality>.<param>``) and JSON-ready metadata for a calibration file."""
        if not self.params_:
            raise CalibrationError("an unfitted relevance map cannot be stored")
        tensors = {
            f"relevance.{m}.{name}": np.ascontiguousarray(v, dtype=np.float64)
            for m, p in self.params_.items()
            for name, v in p.items()
        }
        meta = {
            "kind": self.kind,
            "modalities": sorted(self.params_),
            "counts": self.counts_,
            "notes": self.notes_,
            "min_positives": self.min_positives,
            "min_negatives": self.min_negatives,
            "info": self.info,
        }
        return tensors, meta

    @classmethod
    def from_stored(cls, tensors: Mapping[str, np.ndarray], meta: Mapping) -> RelevanceMap:
        """The map ``to_stored`` wrote; a missing or malformed part is a ``CalibrationError``."""
        rel = cls(
            meta["kind"],
            min_positives=int(meta.get("min_positives", 10)),
            min_negatives=int(meta.get("min_negatives", 10)),
        )
        names = ("x", "y") if rel.kind == "isotonic" else ("a", "b")
        for m in meta["modalities"]:
            try:
                p = {name: np.asarray(tensors[f"relevance.{m}.{name}"], dtype=np.float64) for name in names}
            except KeyError as err:
                raise CalibrationError(f"relevance map of {m!r}: tensor {err.args[0]} is missing") from None
            if not all(v.ndim == 1 and len(v) and np.isfinite(v).all() for v in p.values()):
                raise CalibrationError(f"relevance map of {m!r}: parameters must be finite, non-empty vectors")
            if rel.kind == "isotonic" and (len(p["x"]) != len(p["y"]) or np.any(np.diff(p["x"]) < 0)):
                raise CalibrationError(f"relevance map of {m!r}: breakpoints must be sorted and match the values")
            rel.params_[str(m)] = p
        if POOLED not in rel.params_:
            raise CalibrationError("relevance map without its pooled map ('*')")
        rel.counts_ = {str(k): dict(v) for k, v in meta.get("counts", {}).items()}
        rel.notes_ = list(meta.get("notes", []))
        rel.info = dict(meta.get("info", {}))
        return rel

    def describe(self) -> dict:
        """A JSON-ready summary: kind, counts per modality, which map each uses, notes."""
        return {
            "kind": self.kind,
            "modalities": {m: {**c, "map": self.source(m)} for m, c in self.counts_.items() if m != POOLED},
            "pooled": self.counts_.get(POOLED),
            "notes": self.notes_,
            **({"info": self.info} if self.info else {}),
        }

    def __repr__(self) -> str:
        return f"RelevanceMap(kind={self.kind!r}, modalities={self.modalities_ or 'unfitted'})"


def check_min_relevance(value: object) -> float | None:
    """``None``, or a number in [0, 1] (a usage error otherwise)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise UsageError(f"min_relevance must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:  # also refuses NaN
        raise UsageError(f"min_relevance must be in [0, 1], got {value}")
    return float(value)

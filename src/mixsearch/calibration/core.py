"""The calibration maths: close the modality gap between queries, texts and images.

Plain array code: it imports numpy and mixsearch's error and name modules, and no model, file or
index code (a test checks its imports). The contract (DEVELOPERS.md), for method ``mean``:

    query       q  ->  normalise(q - m_q)
    text doc    t  ->  normalise(t - m_t)
    image doc   i  ->  normalise(i - m_i)
    image+text     ->  normalise(a (t - m_t) + (1 - a) (i - m_i)),  a = 0.5 by default

Every vector-level method has this shape, with another per-part step in place of ``x - m_role``
(``Calibrator.centre``):

- ``none``: ``x`` (plain CLIP);
- ``mean``: ``x - m_role`` (GR-CLIP, arXiv 2507.19054);
- ``standardize``: ``(x - m_role) / (s_role + EPS)``, ``s`` the per-dimension standard deviation
  (I0T, arXiv 2412.14384);
- ``shift``: ``x + lam/2 g`` for text-side parts (queries, document texts) and ``x - lam/2 g_r``
  for a media part of role ``r``, where ``g_r = m_r - m_text`` is the gap vector ("Mind the Gap",
  arXiv 2203.02053) and ``g`` the mean of the fitted ``g_r`` (just ``m_image - m_text`` for an
  image-text corpus); ``lam = 1`` makes the centroids meet.

The score-level methods leave vectors as ``none`` does and fix *scores* per document modality:

- ``zscore``: ``(score - mu_modality) / sigma_modality``, the statistics fitted from query x
  document scores of the calibration set (``transform_scores``);
- ``rrf``: each document modality ranked on its own, the lists fused by reciprocal rank
  (``reciprocal_rank_fusion``, Cormack et al., SIGIR 2009).

Each method is one small strategy class (``Method``: ``NoneMethod``, ``MeanMethod``, ...) holding
its per-part maths; a score-level one also makes the *merger* the engine asks for
(``Calibrator.merger()``: ``merge({modality: (ids, scores)}, k) -> (ids, fixed scores)``).
``Calibrator`` follows scikit-learn's estimator protocol: ``__init__`` stores parameters only,
``fit`` validates them, ``get_params``/``set_params`` make ``sklearn.base.clone`` work, and a
fitted calibrator is changed only by fitting it again: ``with_params``, ``with_method``,
``with_role`` and ``with_relevance`` return new ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CalibrationError, UsageError
from ..types import DOCUMENT_MODALITIES, MEDIA, PART_ROLES
from ..vectors import normalize

if TYPE_CHECKING:
    from .relevance import RelevanceMap

#: Added to the standard deviation before dividing (a dimension that never varies stays finite).
EPS = 1e-6
#: Rows of each role kept to fit the ``zscore`` statistics (query x document scores).
SCORE_SAMPLE = 1024
#: The reciprocal-rank constant of Cormack et al. (2009).
RRF_K = 60


class RunningMean:
    """Mean (and per-dimension standard deviation) of rows seen in batches, in constant memory:
    float64 sums of ``x`` and ``x**2`` and a count."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.total_sq: np.ndarray | None = None  # None when only a mean is known (an old file)
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
            self.total_sq = np.zeros(x.shape[1])
        elif x.shape[1] != self.total.shape[0]:
            raise CalibrationError(f"embedding dimension {x.shape[1]} != {self.total.shape[0]} seen before")
        self.total += x.sum(axis=0)
        if self.total_sq is not None:
            self.total_sq += np.square(x).sum(axis=0)
        self.count += len(x)

    def copy(self) -> RunningMean:
        """An independent copy."""
        other = RunningMean()
        other.count = self.count
        other.total = None if self.total is None else self.total.copy()
        other.total_sq = None if self.total_sq is None else self.total_sq.copy()
        return other

    @property
    def mean(self) -> np.ndarray:
        """The mean of every row seen (float32)."""
        if self.total is None:
            raise CalibrationError("no embeddings seen")
        return (self.total / self.count).astype(np.float32)

    @property
    def std(self) -> np.ndarray | None:
        """The per-dimension (population) standard deviation (float32), or None when unknown."""
        if self.total is None or self.total_sq is None:
            return None
        mean = self.total / self.count
        return np.sqrt(np.maximum(self.total_sq / self.count - mean**2, 0.0)).astype(np.float32)


class _Fit:
    """A calibrator's fitted state: running statistics per role, the first rows of each role (the
    ``zscore`` sample), the score statistics (fixed by a file, or computed from the sample at
    ``score_alpha`` and cached) and an optional relevance map. Each calibrator owns its own copy."""

    __slots__ = ("relevance", "running", "samples", "score_alpha", "score_stats")

    def __init__(self) -> None:
        self.running: dict[str, RunningMean] = {}
        self.samples: dict[str, list[np.ndarray]] = {}
        self.score_stats: dict[str, tuple[float, float]] | None = None  # None: compute from samples
        self.score_alpha: float | None = None  # the alpha ``score_stats`` were computed at
        self.relevance: RelevanceMap | None = None

    def copy(self) -> _Fit:
        """An independent copy (sample arrays and the fitted relevance map are never changed, so shared)."""
        other = _Fit()
        other.running = {role: r.copy() for role, r in self.running.items()}
        other.samples = {role: list(xs) for role, xs in self.samples.items()}
        other.score_stats = None if self.score_stats is None else dict(self.score_stats)
        other.score_alpha, other.relevance = self.score_alpha, self.relevance
        return other


#: The state of a calibrator that has not been fitted (never changed: fitting makes a new one).
_UNFITTED = _Fit()


# -- the methods: one strategy each ---------------------------------------------------------------


#: One query's hit lists, one per document modality: ``{modality: (ids, raw scores)}``, best first.
HitLists = Mapping[str, tuple[Sequence[str], Sequence[float]]]


class ZScoreMerger:
    """``zscore``'s merge of one query's per-modality hit lists: every score becomes
    ``(score - mu_m) / sigma_m`` for its document modality ``m``, and all hits rank by that."""

    def __init__(self, stats: Mapping[str, tuple[float, float]]) -> None:
        self.stats = dict(stats)

    def fix(self, scores: np.ndarray, modalities: np.ndarray | Sequence[str]) -> np.ndarray:
        """The fixed scores (``modalities`` broadcasts against ``scores``)."""
        scores = np.asarray(scores, dtype=np.float64)
        modalities = np.broadcast_to(np.asarray(modalities), scores.shape)
        out = np.empty_like(scores)
        for m in np.unique(modalities).tolist():
            if m not in self.stats:
                raise CalibrationError(_no_score_stats(m, self.stats))
            mu, sigma = self.stats[m]
            sel = modalities == m
            out[sel] = (scores[sel] - mu) / sigma
        return out

    def merge(self, lists: HitLists, k: int) -> tuple[list[str], list[float]]:
        """``{modality: (ids, raw scores)}`` (best first) -> the best ``k`` ``(ids, fixed scores)``."""
        ids: list[str] = []
        fixed: list[float] = []
        for m, (doc_ids, scores) in lists.items():
            ids += list(doc_ids)
            fixed += self.fix(np.asarray(scores, dtype=np.float64), np.full(len(doc_ids), m)).tolist()
        order = sorted(range(len(ids)), key=lambda j: (-fixed[j], ids[j]))[:k]
        return [ids[j] for j in order], [fixed[j] for j in order]


class RRFMerger:
    """``rrf``'s merge of one query's per-modality hit lists: reciprocal rank fusion with constant ``rrf_k``."""

    def __init__(self, rrf_k: float = RRF_K) -> None:
        self.rrf_k = float(rrf_k)

    def merge(self, lists: HitLists, k: int) -> tuple[list[str], list[float]]:
        """``{modality: (ids, raw scores)}`` (best first) -> the best ``k`` ``(ids, fused scores)``."""
        return reciprocal_rank_fusion(list(lists.values()), k=self.rrf_k, depth=k)


Merger = ZScoreMerger | RRFMerger


class Method:
    """One calibration method: the per-part step of a vector-level method (``centre``, not
    re-normalised), what it needs of a fit (``require``) and, for a score-level method, the
    merger of per-modality hit lists. Stateless: the statistics are the calibrator's."""

    name = ""
    #: Whether ``fit`` gathers statistics for it (``none`` has nothing to fit).
    fits = True
    #: Whether it fixes search scores per document modality instead of vectors.
    score_level = False

    def centre(self, cal: Calibrator, x: np.ndarray, role: str) -> np.ndarray:
        """One part's step for ``role`` (float32 rows ``x``), before re-normalising."""
        return x

    def require(self, cal: Calibrator, roles: Iterable[str], dim: int, document_modalities: Iterable[str]) -> None:
        """Refuse, naming what is missing, a fit that cannot serve these roles and document modalities."""
        for role in roles:
            self.centre(cal, np.zeros((1, dim), dtype=np.float32), role)

    def fix_scores(self, cal: Calibrator, scores: np.ndarray, modalities: np.ndarray | Sequence[str]) -> np.ndarray:
        """Scores fixed per document modality (unchanged but for ``zscore``)."""
        return scores

    def merger(self, cal: Calibrator) -> Merger:
        """The merger of per-modality hit lists (score-level methods only)."""
        raise UsageError(f"calibration method {self.name!r} calibrates vectors: it has no merger of hit lists")


class NoneMethod(Method):
    """Plain CLIP: vectors as they are."""

    name, fits = "none", False


class MeanMethod(Method):
    """GR-CLIP: ``x - m_role``."""

    name = "mean"

    def centre(self, cal: Calibrator, x: np.ndarray, role: str) -> np.ndarray:
        """``x - m_role``."""
        return x - cal.mean(role, x.shape[-1])


class StandardizeMethod(Method):
    """I0T: ``(x - m_role) / (s_role + EPS)``."""

    name = "standardize"

    def centre(self, cal: Calibrator, x: np.ndarray, role: str) -> np.ndarray:
        """``(x - m_role) / (s_role + EPS)``."""
        return (x - cal.mean(role, x.shape[-1])) / (cal.std(role, x.shape[-1]) + EPS)


class ShiftMethod(Method):
    """A move along the gap vector: ``x + gap(role)``."""

    name = "shift"

    def centre(self, cal: Calibrator, x: np.ndarray, role: str) -> np.ndarray:
        """``x + gap(role)``."""
        return x + cal.gap(role, x.shape[-1])

    def require(self, cal: Calibrator, roles: Iterable[str], dim: int, document_modalities: Iterable[str]) -> None:
        """A text and a media mean (the gap), then every role's."""
        cal.gap("text", dim)  # the gap itself first: its error names both means it needs
        super().require(cal, roles, dim, document_modalities)


class ZScoreMethod(Method):
    """Score-level: scores standardised per document modality (``ZScoreMerger``)."""

    name, score_level = "zscore", True

    def require(self, cal: Calibrator, roles: Iterable[str], dim: int, document_modalities: Iterable[str]) -> None:
        """Score statistics for every document modality."""
        super().require(cal, roles, dim, document_modalities)
        stats = cal.score_stats_
        for m in document_modalities:
            if m not in stats:
                raise CalibrationError(_no_score_stats(m, stats))

    def fix_scores(self, cal: Calibrator, scores: np.ndarray, modalities: np.ndarray | Sequence[str]) -> np.ndarray:
        """``(score - mu_m) / sigma_m``."""
        return self.merger(cal).fix(scores, modalities)

    def merger(self, cal: Calibrator) -> ZScoreMerger:
        """A ``ZScoreMerger`` of this fit's score statistics."""
        return ZScoreMerger(cal.score_stats_)


class RRFMethod(Method):
    """Score-level: per-modality lists fused by reciprocal rank (``RRFMerger``)."""

    name, score_level = "rrf", True

    def merger(self, cal: Calibrator) -> RRFMerger:
        """An ``RRFMerger`` with the calibrator's ``rrf_k``."""
        return RRFMerger(float(cal.rrf_k))


#: Every method by name (see the module doc).
METHOD_TYPES: dict[str, Method] = {
    m.name: m for m in (NoneMethod(), MeanMethod(), StandardizeMethod(), ShiftMethod(), ZScoreMethod(), RRFMethod())
}
#: ``none``: plain CLIP; ``mean``: GR-CLIP; ``standardize``: I0T; ``shift``: a fixed move along the
#: gap vector; ``zscore``, ``rrf``: score-level fixes per document modality.
METHODS = tuple(METHOD_TYPES)
#: Methods that change the scores of a search, not the vectors.
SCORE_METHODS = tuple(name for name, m in METHOD_TYPES.items() if m.score_level)


class Calibrator:
    """Modality-gap calibration in the scikit-learn manner.

    >>> cal = Calibrator().fit({"query": Q, "text": T, "image": I})
    >>> cal.transform(Q, role="query")                      # calibrated queries
    >>> cal.transform_documents({"text": T, "image": I})    # fused documents

    Parameters (stored as given; ``fit`` checks them, ``check_params`` on demand)
    ----------
    method : one of ``METHODS`` (see the module doc): ``"mean"`` (GR-CLIP), ``"none"`` (plain
        CLIP), ``"standardize"``, ``"shift"``, ``"zscore"``, ``"rrf"``.
    alpha : weight of the text part in a multimodal document (the default of ``transform_documents``).
    shift_lambda : how far ``shift`` moves along the gap (1: the centroids meet).
    rrf_k : the constant of ``rrf`` (a rank-r hit scores ``1 / (rrf_k + r)``).
    fitted_for : the model the means belong to (``name``, ``fingerprint``, ``dim``); a calibration
        that names a model refuses embeddings of another (``check_model``).
    provenance : where the means came from; recorded in calibration files.
    zero_roles : roles deliberately left uncalibrated (their mean is zero).

    Fitted attributes: ``means_``, ``stds_`` and ``counts_`` (per role), ``score_stats_`` (per
    document modality), ``dim_``. Every method but ``none`` fits all of them, so ``with_method``
    turns one fit into any other method. ``fit`` forgets earlier fits.
    ``relevance_``: an optional ``RelevanceMap`` from scores under this calibration to estimated
    relevance (``calibration.relevance``; attach one with ``with_relevance``); ``fit`` and
    ``with_method`` drop it, since they change the scores.

    A fitted calibrator (an index's, say) is never changed in place by the library: ``with_params``
    (``with_alpha``), ``with_method``, ``with_role`` and ``with_relevance`` return new ones, and
    ``sklearn.base.clone`` an unfitted one with equal parameters.
    """

    #: The fitted state; the class default (unfitted) is shared and never changed: fitting
    #: gives the instance its own.
    _fit: _Fit = _UNFITTED

    def __init__(
        self,
        method: str = "mean",
        alpha: float = 0.5,
        *,
        shift_lambda: float = 1.0,
        rrf_k: float = RRF_K,
        fitted_for: Mapping[str, str] | None = None,
        provenance: Mapping | None = None,
        zero_roles: Iterable[str] = (),
    ) -> None:
        # parameters only, as given (``sklearn.base.clone`` checks they come back unchanged)
        self.method = method
        self.alpha = alpha
        self.shift_lambda = shift_lambda
        self.rrf_k = rrf_k
        self.fitted_for = fitted_for
        self.provenance = provenance
        self.zero_roles = zero_roles

    # -- parameters (scikit-learn's estimator protocol) --------------------------------------

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The parameters, read from the ``__init__`` signature as ``BaseEstimator`` does."""
        code = cls.__init__.__code__
        return sorted(code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount])

    def get_params(self, deep: bool = True) -> dict:
        """``{parameter: value}`` (``deep`` is accepted for scikit-learn; there are no sub-estimators)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params) -> Calibrator:
        """Set parameters in place (scikit-learn's contract: on a calibrator not yet fitted, or
        before fitting again; ``with_params`` gives a fitted copy instead). Returns ``self``."""
        self._check_param_names(params)
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def check_params(self) -> Calibrator:
        """Refuse impossible parameters (a ``UsageError`` naming the value); returns ``self``.
        ``fit`` and every transform call it."""
        if self.method not in METHOD_TYPES:
            raise UsageError(f"unknown calibration method {self.method!r}; expected one of {', '.join(METHODS)}")
        _check_alpha(self.alpha)
        if not np.isfinite(self.shift_lambda):
            raise UsageError(f"shift_lambda must be a finite number, got {self.shift_lambda}")
        if not self.rrf_k >= 0:  # also refuses NaN
            raise UsageError(f"rrf_k must be >= 0, got {self.rrf_k}")
        for role in self.zero_roles:
            _check_role(role)
        return self

    def _check_param_names(self, params: Mapping) -> None:
        valid = self._get_param_names()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise UsageError(f"invalid Calibrator parameter(s) {', '.join(unknown)}; valid: {', '.join(valid)}")

    @property
    def strategy(self) -> Method:
        """This calibrator's method (``METHOD_TYPES[method]``), its parameters checked."""
        self.check_params()
        return METHOD_TYPES[self.method]

    @property
    def score_level(self) -> bool:
        """Whether this method fixes search scores per document modality (``zscore``, ``rrf``):
        the engine then searches each document modality apart and asks ``merger()`` to merge."""
        return self.strategy.score_level

    def merger(self) -> Merger:
        """The merger of a score-level method: ``merge({modality: (ids, raw scores)}, k) ->
        (ids, fixed scores)`` for one query's per-modality hit lists (a ``UsageError`` for a
        vector-level method)."""
        return self.strategy.merger(self)

    def __sklearn_is_fitted__(self) -> bool:
        return self.method == "none" or self._fit is not _UNFITTED

    # -- new calibrators from this one --------------------------------------------------------

    def with_params(self, **params) -> Calibrator:
        """A new calibrator with these parameters changed and a copy of this one's fit (``set_params``
        on a copy; ``clone`` keeps no fit). Another ``method`` drops the relevance map (the scores
        change), and ``none`` the statistics too."""
        self._check_param_names(params)
        kept = {k: dict(v) if isinstance(v, Mapping) else v for k, v in self.get_params().items()}  # records unshared
        other = type(self)(**{**kept, **params}).check_params()
        if self._fit is not _UNFITTED:
            fit = self._fit.copy()
            if other.method != self.method:
                fit.relevance = None
                if not other.strategy.fits:
                    fit = _UNFITTED
            other._fit = fit
        return other

    def with_alpha(self, alpha: float) -> Calibrator:
        """This calibration at another ``alpha`` (a new calibrator; the relevance map is kept)."""
        return self.with_params(alpha=alpha)

    def with_method(self, method: str, *, shift_lambda: float | None = None, rrf_k: float | None = None) -> Calibrator:
        """A copy of this fit under another method (and ``shift_lambda``/``rrf_k``), sharing
        nothing; without its relevance map."""
        params: dict = {"method": method}
        if shift_lambda is not None:
            params["shift_lambda"] = shift_lambda
        if rrf_k is not None:
            params["rrf_k"] = rrf_k
        other = self.with_params(**params)
        if other._fit is not _UNFITTED:
            other._fit.relevance = None
        return other

    def with_role(self, target: str, source: str, *, of: Calibrator | None = None) -> Calibrator:
        """A copy in which ``target`` takes the statistics of ``source`` (of this calibrator, or
        of ``of``): queries borrowing the document-text mean, say, or screenshots an image mean."""
        _check_role(target)
        donor = (self if of is None else of)._fit
        if source not in donor.running:
            raise CalibrationError(f"no {source!r} statistics to copy")
        other = self.with_params()
        fit = other._own_fit()
        fit.running[target] = donor.running[source].copy()
        fit.samples.pop(target, None)
        if source in donor.samples:
            fit.samples[target] = list(donor.samples[source])
        fit.score_stats = None
        return other

    def with_relevance(self, relevance: RelevanceMap | None) -> Calibrator:
        """A copy with this relevance map (``calibration.relevance``; None: without one)."""
        other = self.with_params()
        other._own_fit().relevance = relevance
        return other

    def _own_fit(self) -> _Fit:
        """This calibrator's fitted state, made its own first when it has none (the shared unfitted one)."""
        if self._fit is _UNFITTED:
            self._fit = _Fit()
        return self._fit

    @classmethod
    def from_statistics(
        cls,
        means: Mapping[str, np.ndarray],
        counts: Mapping[str, int] | None = None,
        *,
        stds: Mapping[str, np.ndarray] | None = None,
        score_stats: Mapping[str, tuple[float, float]] | None = None,
        relevance: RelevanceMap | None = None,
        **params,
    ) -> Calibrator:
        """A calibrator fitted from known statistics (a calibration file): ``means[role]`` over
        ``counts[role]`` items (1 when not given), optional per-dimension ``stds[role]``,
        ``zscore``'s ``score_stats`` (``{document modality: (mean, std)}``) and a relevance map;
        ``params`` as for ``Calibrator``. Every value is checked."""
        cal = cls(**params).check_params()
        fit = _Fit()
        for role, mean in means.items():
            std = (stds or {}).get(role)
            fit.running[role] = _running_from(role, mean, int((counts or {}).get(role, 1)), std)
        if score_stats:
            fit.score_stats = _checked_score_stats(score_stats)
        fit.relevance = relevance
        cal._fit = fit
        return cal

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, embeddings: Mapping[str, np.ndarray]) -> Calibrator:
        """Fit per-role statistics from ``{role: (n, d) embeddings}``, forgetting earlier fits
        (and the relevance map)."""
        self.check_params()
        self._fit = _UNFITTED
        for role, x in embeddings.items():
            self.partial_fit(x, role)
        return self

    def partial_fit(self, x: np.ndarray, role: str) -> Calibrator:
        """Add a batch of raw (normalised) embeddings of one role to its running statistics."""
        _check_role(role)
        if not self.strategy.fits:
            return self
        fit = self._own_fit()
        fit.running.setdefault(role, RunningMean()).update(x)
        dims = {r.total.shape[0] for r in fit.running.values() if r.total is not None}
        if len(dims) > 1:
            raise CalibrationError(f"role {role!r} has dimension {np.shape(x)[1]}, other roles {sorted(dims)}")
        kept = sum(len(s) for s in fit.samples.get(role, []))
        if kept < SCORE_SAMPLE and len(x):  # the first rows seen are the zscore sample
            fit.samples.setdefault(role, []).append(np.asarray(x, dtype=np.float32)[: SCORE_SAMPLE - kept].copy())
            fit.score_stats = None
        return self

    @property
    def means_(self) -> dict[str, np.ndarray]:
        """The fitted mean of each role."""
        return {role: r.mean for role, r in self._fit.running.items() if r.count}

    @property
    def stds_(self) -> dict[str, np.ndarray]:
        """The fitted per-dimension standard deviation of each role (where known)."""
        out = {}
        for role, r in self._fit.running.items():
            std = r.std if r.count else None
            if std is not None:
                out[role] = std
        return out

    @property
    def counts_(self) -> dict[str, int]:
        """How many embeddings each role's mean saw."""
        return {role: r.count for role, r in self._fit.running.items() if r.count}

    @property
    def dim_(self) -> int | None:
        """The embedding dimension of the fitted means (None before fitting)."""
        means = self.means_
        return next(iter(means.values())).shape[0] if means else None

    @property
    def relevance_(self) -> RelevanceMap | None:
        """The relevance map of this calibration, if any (``with_relevance`` attaches one)."""
        return self._fit.relevance

    @property
    def score_stats_(self) -> dict[str, tuple[float, float]]:
        """``{document modality: (mean, std)}`` of raw query x document scores (for ``zscore``).

        Fitted on the first ``SCORE_SAMPLE`` rows of each role: single-part documents score the
        query sample against that part's sample; ``multimodal`` documents against
        ``normalise(alpha t_j + (1 - alpha) m_j)`` of the j-th text and j-th media rows (unrelated
        pairs, like most query-document pairs; at this calibrator's alpha)."""
        fit = self._fit
        if fit is _UNFITTED:
            return {}
        alpha = _check_alpha(self.alpha)
        if fit.score_stats is None or (fit.samples and fit.score_alpha != alpha):
            # a cache of what the fit implies at this alpha, not a change of the fit
            fit.score_stats, fit.score_alpha = _fit_score_stats(fit.samples, alpha), alpha
        return dict(fit.score_stats)

    # -- the statistics each method reads ---------------------------------------------------

    def mean(self, role: str, dim: int) -> np.ndarray:
        """The fitted mean of ``role`` (zeros for a ``zero_roles`` role without one)."""
        _check_role(role)
        means = self.means_
        if role in self.zero_roles and role not in means:
            return np.zeros(dim, dtype=np.float32)
        return self._fitted(means, role, dim, "mean")

    def std(self, role: str, dim: int) -> np.ndarray:
        """The per-dimension standard deviation ``standardize`` divides ``role`` by (ones for a
        zero role)."""
        _check_role(role)
        stds = self.stds_
        if role in self.zero_roles and role not in stds:
            return np.ones(dim, dtype=np.float32)
        self._fitted(self.means_, role, dim, "mean")
        if role not in stds:
            raise CalibrationError(
                f"this calibration has a {role!r} mean but no standard deviation (a file written before "
                "'standardize' existed): fit it again with 'mixsearch calibrate --method standardize'"
            )
        return stds[role]

    def gap(self, role: str, dim: int) -> np.ndarray:
        """The vector ``shift`` adds to ``role``'s parts: ``+lam/2 g`` on the text side (queries,
        texts), ``-lam/2 (m_role - m_text)`` for a media role."""
        _check_role(role)
        means = self.means_
        fitted_media = [m for m in MEDIA if m in means]
        if "text" not in means or not fitted_media:
            raise CalibrationError(
                "method 'shift' needs a document-text mean and an image (audio, video) mean to find the "
                f"gap vector; this calibration has {', '.join(sorted(means)) or 'none'}: no image part"
            )
        m_text = self._fitted(means, "text", dim, "mean")
        half = float(self.shift_lambda) / 2
        if role in ("query", "text"):
            g = np.mean([means[m] - m_text for m in fitted_media], axis=0)
            return (half * g).astype(np.float32)
        return (-half * (self._fitted(means, role, dim, "mean") - m_text)).astype(np.float32)

    def _fitted(self, table: Mapping[str, np.ndarray], role: str, dim: int, what: str) -> np.ndarray:
        if role not in table:
            fitted = ", ".join(sorted(table)) or "none"
            items = "queries" if role == "query" else f"document {role}s"
            raise CalibrationError(
                f"this calibration has no {role!r} {what} (fitted: {fitted}); fit one on {items} with "
                f"'mixsearch calibrate' and apply it with 'mixsearch recalibrate INDEX --calibration FILE'"
            )
        if table[role].shape[0] != dim:
            raise CalibrationError(
                f"embedding dimension {dim} does not match the calibration's {table[role].shape[0]}"
                f"{_model_hint(self.fitted_for or {})}"
            )
        return table[role]

    # -- applying vectors -----------------------------------------------------------------

    def centre(self, x: np.ndarray, role: str) -> np.ndarray:
        """One part's calibration step, not re-normalised (the building block of fusion):
        ``x - m_role`` for ``mean``, ``(x - m_role) / (s_role + EPS)`` for ``standardize``,
        ``x`` moved along the gap for ``shift``, ``x`` for the others."""
        return self.strategy.centre(self, np.asarray(x, dtype=np.float32), role)

    def transform(self, x: np.ndarray, role: str = "query") -> np.ndarray:
        """Calibrate single-modality embeddings: ``normalise(centre(x, role))``."""
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
        alpha = _check_alpha(self.alpha if alpha is None else alpha)
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

    # -- applying scores ------------------------------------------------------------------

    def transform_scores(self, scores: np.ndarray, modalities: np.ndarray | Sequence[str]) -> np.ndarray:
        """``zscore``: ``(score - mu_m) / sigma_m`` for each score's document modality ``m``
        (``modalities`` broadcasts against ``scores``); other methods return the scores unchanged."""
        return self.strategy.fix_scores(self, np.asarray(scores, dtype=np.float64), modalities)

    # -- checks ---------------------------------------------------------------------------

    def require(self, roles: Iterable[str], dim: int, document_modalities: Iterable[str] = ()) -> None:
        """Refuse, naming what is missing, a calibration that cannot serve these query/part roles
        and document modalities (``mean``/``standardize``: a mean (and std) per role; ``shift``:
        a text and a media mean; ``zscore``: score statistics per document modality)."""
        self.strategy.require(self, roles, dim, document_modalities)

    def check_model(self, fingerprint: str, name: str = "") -> None:
        """Refuse embeddings from a model other than the one the means were fitted on."""
        fitted_for = self.fitted_for or {}
        mine = fitted_for.get("fingerprint")
        if self.strategy.fits and mine and mine != fingerprint:
            raise CalibrationError(
                f"this calibration was fitted on model {fitted_for.get('name', '?')!r} "
                f"(fingerprint {mine}); it cannot be applied to embeddings of "
                f"{name or 'another model'!r} (fingerprint {fingerprint}). Fit one for that model."
            )

    def __repr__(self) -> str:
        counts = ", ".join(f"{r}={c}" for r, c in self.counts_.items())
        return f"Calibrator(method={self.method!r}, alpha={self.alpha}, counts: {counts or 'unfitted'})"


def _running_from(role: str, mean: np.ndarray, count: int, std: np.ndarray | None) -> RunningMean:
    """The running sums that give this mean (and standard deviation) over ``count`` items."""
    _check_role(role)
    if count < 1:
        raise CalibrationError(f"a mean needs a positive item count, got {count} for {role!r}")
    if np.ndim(mean) != 1 or not np.isfinite(mean).all():
        raise CalibrationError(f"the {role!r} mean must be a vector of finite numbers (not NaN or infinity)")
    running = RunningMean()
    running.total = np.asarray(mean, dtype=np.float64) * count
    running.count = count
    if std is not None:
        if np.shape(std) != np.shape(mean) or not np.isfinite(std).all() or (np.asarray(std) < 0).any():
            raise CalibrationError(f"the {role!r} standard deviation must be finite, >= 0 and shaped like its mean")
        running.total_sq = (np.asarray(std, dtype=np.float64) ** 2 + np.asarray(mean, dtype=np.float64) ** 2) * count
    return running


def _checked_score_stats(stats: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    checked = {}
    for modality, (mu, sigma) in stats.items():
        if modality not in DOCUMENT_MODALITIES:
            raise CalibrationError(f"score statistics for unknown document modality {modality!r}")
        if not (np.isfinite(mu) and np.isfinite(sigma) and sigma > 0):
            raise CalibrationError(f"the {modality!r} score statistics must be finite with a positive std")
        checked[modality] = (float(mu), float(sigma))
    return checked


def _fit_score_stats(samples: Mapping[str, list[np.ndarray]], alpha: float) -> dict[str, tuple[float, float]]:
    """``zscore``'s statistics from the kept samples (see ``Calibrator.score_stats_``)."""
    sample = {role: normalize(np.concatenate(xs)) for role, xs in samples.items() if xs}
    if "query" not in sample:
        return {}
    q, out = sample["query"], {}
    for role in ("text", *MEDIA):
        if role in sample:
            out[role] = _moments(q @ sample[role].T)
    if "text" in sample:
        fused = []
        for media in MEDIA:
            if media in sample:
                n = min(len(sample["text"]), len(sample[media]))
                fused.append(normalize(alpha * sample["text"][:n] + (1 - alpha) * sample[media][:n]))
        if fused:
            out["multimodal"] = _moments(q @ np.concatenate(fused).T)
    if "multimodal" in sample:  # jointly encoded image+text documents: their own vectors
        out["multimodal"] = _moments(q @ sample["multimodal"].T)
    return {m: s for m, s in out.items() if s[1] > 0}


def reciprocal_rank_fusion(
    lists: Sequence[tuple[Sequence[str], Sequence[float]]], *, k: float = RRF_K, depth: int | None = None
) -> tuple[list[str], list[float]]:
    """Fuse ranked lists (``(ids, scores)`` each, best first) by reciprocal rank (Cormack, Clarke
    and Buettcher, SIGIR 2009): a document scores ``sum over lists of 1 / (k + rank)``, rank
    counted from 1. Ties are broken by the best raw score, then the id. For disjoint lists (one
    per document modality) this interleaves them: every list's first hit, then every second, ...
    Returns the fused ``(ids, scores)``, the best ``depth`` (all when None)."""
    fused: dict[str, float] = {}
    best_raw: dict[str, float] = {}
    for ids, scores in lists:
        for rank, (doc_id, raw) in enumerate(zip(ids, scores), 1):
            fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (k + rank)
            best_raw[doc_id] = max(best_raw.get(doc_id, -np.inf), float(raw))
    order = sorted(fused, key=lambda d: (-fused[d], -best_raw[d], d))[:depth]
    return order, [fused[d] for d in order]


def _moments(scores: np.ndarray) -> tuple[float, float]:
    scores = np.asarray(scores, dtype=np.float64)
    return float(scores.mean()), float(scores.std())


def _no_score_stats(modality: str, stats: Mapping) -> str:
    fitted = ", ".join(sorted(stats)) or "none"
    return (
        f"this 'zscore' calibration has no score statistics for {modality!r} documents (fitted: {fitted}); "
        "fit it on queries and on document texts and images ('mixsearch calibrate --method zscore "
        "--queries ... --texts ... --images ...')"
    )


def _check_role(role: str) -> None:
    if role not in PART_ROLES:
        raise UsageError(f"unknown role {role!r}; expected one of {', '.join(PART_ROLES)}")


def _check_alpha(alpha: float) -> float:
    if not 0.0 <= float(alpha) <= 1.0:  # also refuses NaN
        raise UsageError(f"alpha must be in [0, 1], got {alpha}")
    return float(alpha)


def _model_hint(fitted_for: Mapping[str, str]) -> str:
    name = fitted_for.get("name")
    return f" (it was fitted on model {name!r}: is this another model?)" if name else ""

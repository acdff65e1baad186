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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CalibrationError, UsageError
from ..types import DOCUMENT_MODALITIES, MEDIA, ROLES
from ..vectors import normalize

if TYPE_CHECKING:
    from .relevance import RelevanceMap

#: ``none``: plain CLIP; ``mean``: GR-CLIP; ``standardize``: I0T; ``shift``: a fixed move along the
#: gap vector; ``zscore``, ``rrf``: score-level fixes per document modality.
METHODS = ("none", "mean", "standardize", "shift", "zscore", "rrf")
#: Methods that change the scores of a search, not the vectors.
SCORE_METHODS = ("zscore", "rrf")
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


class Calibrator:
    """Modality-gap calibration in the scikit-learn manner.

    >>> cal = Calibrator().fit({"query": Q, "text": T, "image": I})
    >>> cal.transform(Q, role="query")                      # calibrated queries
    >>> cal.transform_documents({"text": T, "image": I})    # fused documents

    Parameters
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
    relevance (``calibration.relevance``); ``fit`` and ``with_method`` drop it, since they change the scores.
    """

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
        if method not in METHODS:
            raise UsageError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
        self.method = method
        self.alpha = _check_alpha(alpha)
        if not np.isfinite(shift_lambda):
            raise UsageError(f"shift_lambda must be a finite number, got {shift_lambda}")
        self.shift_lambda = float(shift_lambda)
        if not rrf_k >= 0:  # also refuses NaN
            raise UsageError(f"rrf_k must be >= 0, got {rrf_k}")
        self.rrf_k = float(rrf_k)
        self.fitted_for: dict[str, str] = dict(fitted_for or {})
        self.provenance: dict = dict(provenance or {})
        self.zero_roles: set[str] = set(zero_roles)
        for role in self.zero_roles:
            _check_role(role)
        self._running: dict[str, RunningMean] = {}
        self.relevance_: RelevanceMap | None = None
        self._samples: dict[str, list[np.ndarray]] = {}
        self._score_stats: dict[str, tuple[float, float]] | None = None  # None: compute from samples
        self._score_alpha = self.alpha  # the alpha the multimodal score statistics were fitted at

    @property
    def score_level(self) -> bool:
        """Whether this method fixes search scores per document modality (``zscore``, ``rrf``)."""
        return self.method in SCORE_METHODS

    def with_method(self, method: str, *, shift_lambda: float | None = None, rrf_k: float | None = None) -> Calibrator:
        """A copy of this fit under another method (and ``shift_lambda``/``rrf_k``), sharing nothing."""
        other = Calibrator(
            method,
            self.alpha,
            shift_lambda=self.shift_lambda if shift_lambda is None else shift_lambda,
            rrf_k=self.rrf_k if rrf_k is None else rrf_k,
            fitted_for=self.fitted_for,
            provenance=self.provenance,
            zero_roles=self.zero_roles,
        )
        other._running = {role: r.copy() for role, r in self._running.items()}
        other._samples = {role: list(xs) for role, xs in self._samples.items()}  # arrays are never changed
        other._score_stats = None if self._score_stats is None else dict(self._score_stats)
        other._score_alpha = self._score_alpha
        if method == "none":
            other._running, other._samples, other._score_stats = {}, {}, None
        return other

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, embeddings: Mapping[str, np.ndarray]) -> Calibrator:
        """Fit per-role statistics from ``{role: (n, d) embeddings}``, forgetting earlier fits."""
        self._running, self._samples, self._score_stats = {}, {}, None
        self.relevance_ = None
        for role, x in embeddings.items():
            self.partial_fit(x, role)
        return self

    def partial_fit(self, x: np.ndarray, role: str) -> Calibrator:
        """Add a batch of raw (normalised) embeddings of one role to its running statistics."""
        _check_role(role)
        if self.method == "none":
            return self
        self._running.setdefault(role, RunningMean()).update(x)
        dims = {r.total.shape[0] for r in self._running.values() if r.total is not None}
        if len(dims) > 1:
            raise CalibrationError(f"role {role!r} has dimension {np.shape(x)[1]}, other roles {sorted(dims)}")
        kept = sum(len(s) for s in self._samples.get(role, []))
        if kept < SCORE_SAMPLE and len(x):  # the first rows seen are the zscore sample
            self._samples.setdefault(role, []).append(np.asarray(x, dtype=np.float32)[: SCORE_SAMPLE - kept].copy())
            self._score_stats = None
        return self

    def copy_role(self, source: str, target: str, *, of: Calibrator | None = None) -> Calibrator:
        """Let ``target`` use the statistics of ``source`` (of this calibrator, or of ``of``):
        queries borrowing the document-text mean, say."""
        _check_role(target)
        donor = self if of is None else of
        if source not in donor._running:
            raise CalibrationError(f"no {source!r} statistics to copy")
        self._running[target] = donor._running[source].copy()
        self._samples.pop(target, None)
        if source in donor._samples:
            self._samples[target] = list(donor._samples[source])
        self._score_stats = None
        return self

    def set_mean(self, role: str, mean: np.ndarray, count: int, std: np.ndarray | None = None) -> Calibrator:
        """Use a given mean (and standard deviation) for a role (loading a file, or borrowing another role's)."""
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
            running.total_sq = (
                np.asarray(std, dtype=np.float64) ** 2 + np.asarray(mean, dtype=np.float64) ** 2
            ) * count
        self._running[role] = running
        return self

    def set_score_stats(self, stats: Mapping[str, tuple[float, float]]) -> Calibrator:
        """Use given ``{document modality: (score mean, score std)}`` for ``zscore`` (loading a file)."""
        checked = {}
        for modality, (mu, sigma) in stats.items():
            if modality not in DOCUMENT_MODALITIES:
                raise CalibrationError(f"score statistics for unknown document modality {modality!r}")
            if not (np.isfinite(mu) and np.isfinite(sigma) and sigma > 0):
                raise CalibrationError(f"the {modality!r} score statistics must be finite with a positive std")
            checked[modality] = (float(mu), float(sigma))
        self._score_stats = checked
        self._samples = {}
        return self

    @property
    def means_(self) -> dict[str, np.ndarray]:
        """The fitted mean of each role."""
        return {role: r.mean for role, r in self._running.items() if r.count}

    @property
    def stds_(self) -> dict[str, np.ndarray]:
        """The fitted per-dimension standard deviation of each role (where known)."""
        out = {}
        for role, r in self._running.items():
            std = r.std if r.count else None
            if std is not None:
                out[role] = std
        return out

    @property
    def counts_(self) -> dict[str, int]:
        """How many embeddings each role's mean saw."""
        return {role: r.count for role, r in self._running.items() if r.count}

    @property
    def dim_(self) -> int | None:
        """The embedding dimension of the fitted means (None before fitting)."""
        means = self.means_
        return next(iter(means.values())).shape[0] if means else None

    @property
    def score_stats_(self) -> dict[str, tuple[float, float]]:
        """``{document modality: (mean, std)}`` of raw query x document scores (for ``zscore``).

        Fitted on the first ``SCORE_SAMPLE`` rows of each role: single-part documents score the
        query sample against that part's sample; ``multimodal`` documents against
        ``normalise(alpha t_j + (1 - alpha) m_j)`` of the j-th text and j-th media rows (unrelated
        pairs, like most query-document pairs; at the alpha of the fit)."""
        if self._score_stats is None or (self._samples and self._score_alpha != self.alpha):
            self._score_stats, self._score_alpha = self._fit_score_stats(), self.alpha
        return dict(self._score_stats)

    def _fit_score_stats(self) -> dict[str, tuple[float, float]]:
        sample = {role: normalize(np.concatenate(xs)) for role, xs in self._samples.items() if xs}
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
                    fused.append(normalize(self.alpha * sample["text"][:n] + (1 - self.alpha) * sample[media][:n]))
            if fused:
                out["multimodal"] = _moments(q @ np.concatenate(fused).T)
        return {m: s for m, s in out.items() if s[1] > 0}

    # -- applying vectors -----------------------------------------------------------------

    def mean(self, role: str, dim: int) -> np.ndarray:
        """The mean subtracted for ``role`` by ``mean`` and ``standardize`` (zeros for the other
        methods and for ``zero_roles``)."""
        _check_role(role)
        means = self.means_
        if self.method not in ("mean", "standardize") or (role in self.zero_roles and role not in means):
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
        half = self.shift_lambda / 2
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
                f"{_model_hint(self.fitted_for)}"
            )
        return table[role]

    def centre(self, x: np.ndarray, role: str) -> np.ndarray:
        """One part's calibration step, not re-normalised (the building block of fusion):
        ``x - m_role`` for ``mean``, ``(x - m_role) / (s_role + EPS)`` for ``standardize``,
        ``x`` moved along the gap for ``shift``, ``x`` for the others."""
        x = np.asarray(x, dtype=np.float32)
        dim = x.shape[-1]
        if self.method == "shift":
            return x + self.gap(role, dim)
        centred = x - self.mean(role, dim)
        if self.method == "standardize":
            return centred / (self.std(role, dim) + EPS)
        return centred

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

    # -- applying scores ------------------------------------------------------------------

    def transform_scores(self, scores: np.ndarray, modalities: np.ndarray | Sequence[str]) -> np.ndarray:
        """``zscore``: ``(score - mu_m) / sigma_m`` for each score's document modality ``m``
        (``modalities`` broadcasts against ``scores``); other methods return the scores unchanged."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.method != "zscore":
            return scores
        modalities = np.broadcast_to(np.asarray(modalities), scores.shape)
        stats = self.score_stats_
        out = np.empty_like(scores)
        for m in np.unique(modalities).tolist():
            if m not in stats:
                raise CalibrationError(_no_score_stats(m, stats))
            mu, sigma = stats[m]
            sel = modalities == m
            out[sel] = (scores[sel] - mu) / sigma
        return out

    def merge_modalities(
        self, lists: Mapping[str, tuple[Sequence[str], Sequence[float]]], k: int
    ) -> tuple[list[str], list[float]]:
        """One query's hit lists, one per document modality (``{modality: (ids, raw scores)}``,
        best first), merged into its top ``k`` under this score-level method: ``zscore`` ranks
        every hit by its fixed score, ``rrf`` by reciprocal rank. Returns ``(ids, scores)``."""
        if self.method == "rrf":
            return reciprocal_rank_fusion(list(lists.values()), k=self.rrf_k, depth=k)
        ids: list[str] = []
        fixed: list[float] = []
        for m, (doc_ids, scores) in lists.items():
            ids += list(doc_ids)
            fixed += list(self.transform_scores(np.asarray(scores, dtype=np.float64), np.full(len(doc_ids), m)))
        order = sorted(range(len(ids)), key=lambda j: (-fixed[j], ids[j]))[:k]
        return [ids[j] for j in order], [fixed[j] for j in order]

    # -- checks ---------------------------------------------------------------------------

    def require(self, roles: Iterable[str], dim: int, document_modalities: Iterable[str] = ()) -> None:
        """Refuse, naming what is missing, a calibration that cannot serve these query/part roles
        and document modalities (``mean``/``standardize``: a mean (and std) per role; ``shift``:
        a text and a media mean; ``zscore``: score statistics per document modality)."""
        if self.method == "shift":
            self.gap("text", dim)
        for role in roles:
            self.centre(np.zeros((1, dim), dtype=np.float32), role)
        if self.method == "zscore":
            stats = self.score_stats_
            for m in document_modalities:
                if m not in stats:
                    raise CalibrationError(_no_score_stats(m, stats))

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
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")


def _check_alpha(alpha: float) -> float:
    if not 0.0 <= float(alpha) <= 1.0:  # also refuses NaN
        raise UsageError(f"alpha must be in [0, 1], got {alpha}")
    return float(alpha)


def _model_hint(fitted_for: Mapping[str, str]) -> str:
    name = fitted_for.get("name")
    return f" (it was fitted on model {name!r}: is this another model?)" if name else ""

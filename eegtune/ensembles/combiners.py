"""Where an ensemble is weighted: the four combiners and the shrinkage towards the mean.

Every combiner works on :class:`FitStats`, the sufficient statistics of the members'
out-of-fold (OOF) predictions against the targets (sums, cross-products, Gram matrix).
Sums of stats are the stats of the union of rows, so a nested fit on "every outer fold
but f" adds K−1 folds' stats and never touches a row again: fitting costs O(M²) whatever
the number of windows (1.4M on Challenge 2).

With weights summing to 1 a combination's squared error is ``wᵀ R w`` where
``R[i, j] = Σ (y − p_i)(y − p_j)`` (the members' error cross-products), which is what
``best``, ``mean``, ``weighted`` and ``greedy`` minimise, each under its own constraints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from eegtune.errors import ConfigError

GREEDY_INIT_MAX = 5  # Caruana's sorted initialisation: at most this many best members
_CHUNK = 65_536  # rows per step when summing stats, so a float64 copy stays small


@dataclass(frozen=True)
class FitStats:
    """Sufficient statistics of OOF predictions ``P`` (rows × members) and targets ``y``."""

    n: float
    sum_y: float
    yy: float
    s: np.ndarray  # Σ p_m, per member
    b: np.ndarray  # Σ y·p_m
    gram: np.ndarray  # Σ p_i·p_j

    @classmethod
    def of(cls, preds: np.ndarray, y: np.ndarray) -> FitStats:
        m = preds.shape[1]
        s, b, gram = np.zeros(m), np.zeros(m), np.zeros((m, m))
        for start in range(0, len(y), _CHUNK):
            p = preds[start : start + _CHUNK].astype(np.float64)
            t = np.asarray(y[start : start + _CHUNK], dtype=np.float64)
            s += p.sum(axis=0)
            b += t @ p
            gram += p.T @ p
        y64 = np.asarray(y, dtype=np.float64)
        return cls(float(len(y64)), float(y64.sum()), float(y64 @ y64), s, b, gram)

    def __add__(self, other: FitStats) -> FitStats:
        return FitStats(
            self.n + other.n,
            self.sum_y + other.sum_y,
            self.yy + other.yy,
            self.s + other.s,
            self.b + other.b,
            self.gram + other.gram,
        )

    @property
    def mean(self) -> float:
        return self.sum_y / self.n

    def error_products(self) -> np.ndarray:
        """``R[i, j] = Σ (y − p_i)(y − p_j)``."""
        return self.yy - self.b[:, None] - self.b[None, :] + self.gram

    def member_sse(self) -> np.ndarray:
        return np.diag(self.error_products()).copy()


@dataclass(frozen=True)
class Combination:
    """``prediction = centre + alpha · (P @ weights − centre)``.

    ``weights`` sum to 1 over the members used; all zeros is the mean predictor (it
    predicts ``centre``, the training targets' mean, whatever the input).
    """

    weights: np.ndarray
    alpha: float
    centre: float

    def predict(self, preds: np.ndarray) -> np.ndarray:
        if not len(self.members):
            return np.full(len(preds), self.centre)
        ens = preds.astype(np.float64) @ self.weights
        return self.centre + self.alpha * (ens - self.centre)

    @property
    def members(self) -> np.ndarray:
        """Indices of the members that move the prediction (none when α is 0: shrunk all
        the way to the mean, the members need not even be loaded)."""
        if self.alpha == 0:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.weights)


def fit_combination(
    method: str,
    stats: FitStats,
    top_k: int = 5,
    size: int = 25,
    shrink: bool = True,
    max_models: int | None = None,
) -> Combination:
    """Fit ``method``'s weights, then the shrinkage α, on ``stats`` alone."""
    if method not in COMBINERS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    weights = COMBINERS[method](stats, top_k=top_k, size=size, max_models=max_models)
    alpha = fit_shrinkage(stats, weights) if shrink else 1.0
    return Combination(weights, alpha, stats.mean)


def single(member: int, n_members: int, centre: float) -> Combination:
    """One member as it is, no shrinkage: the best single trial."""
    return Combination(_one_hot(member, n_members), 1.0, centre)


def mean_predictor(n_members: int, centre: float) -> Combination:
    return Combination(np.zeros(n_members), 0.0, centre)


def _one_hot(index: int, n: int) -> np.ndarray:
    w = np.zeros(n)
    w[index] = 1.0
    return w


def mean_weights(stats: FitStats, top_k: int) -> np.ndarray:
    """Equal weights on the ``top_k`` members with the lowest squared error."""
    if top_k < 1:
        raise ConfigError(f"top_k must be at least 1, got {top_k}")
    order = np.argsort(stats.member_sse(), kind="stable")[:top_k]
    w = np.zeros(len(stats.s))
    w[order] = 1.0 / len(order)
    return w


def nnls_weights(stats: FitStats) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise ``wᵀ R w``.

    Solved as non-negative least squares: ``R = LLᵀ`` turns ``wᵀ R w`` into ``‖Lᵀw‖²``,
    and a heavily weighted row of ones holds ``Σw`` at 1 (the weights are renormalised
    after, which moves them by well under 1e-6).
    """
    from scipy.optimize import nnls

    r = stats.error_products() / stats.n
    m = len(r)
    scale = max(float(np.trace(r)) / m, 1e-12)
    chol = np.linalg.cholesky(r + np.eye(m) * scale * 1e-9)
    penalty = 1e3 * np.sqrt(scale)
    a = np.vstack([chol.T, np.full((1, m), penalty)])
    rhs = np.concatenate([np.zeros(m), [penalty]])
    w, _ = nnls(a, rhs, maxiter=50 * m)
    if w.sum() <= 0:
        return _one_hot(int(np.diag(r).argmin()), m)
    return w / w.sum()


def greedy_weights(stats: FitStats, size: int, max_models: int | None = None) -> np.ndarray:
    """Caruana et al. (2004) ensemble selection with replacement.

    Sorted initialisation (the best members, while their plain mean keeps improving, at
    most :data:`GREEDY_INIT_MAX`), then the member whose addition most lowers the squared
    error, until ``size`` picks; the prefix of picks with the lowest error is kept.
    ``max_models``: at most this many distinct members (each costs its fold models'
    forward passes at inference); once reached, picks only re-weight the chosen ones.
    """
    if size < 1:
        raise ConfigError(f"size must be at least 1, got {size}")
    if max_models is not None and max_models < 1:
        raise ConfigError(f"max_models must be at least 1, got {max_models}")
    budget = len(stats.s) if max_models is None else max_models
    r = stats.error_products()
    order = np.argsort(np.diag(r), kind="stable")
    counts = np.zeros(len(r))
    counts[order[0]] = 1.0
    sse = r[order[0], order[0]]
    for m in order[1 : min(GREEDY_INIT_MAX, size, budget)]:
        trial = counts.copy()
        trial[m] += 1
        trial_sse = trial @ r @ trial / trial.sum() ** 2
        if trial_sse >= sse:
            break
        counts, sse = trial, trial_sse
    best_counts, best_sse = counts.copy(), sse
    while counts.sum() < size:
        t = counts.sum()
        # Error of the mean after adding each member, for all members at once.
        rc = r @ counts
        after = (counts @ rc + 2 * rc + np.diag(r)) / (t + 1) ** 2
        if np.count_nonzero(counts) >= budget:
            after = np.where(counts > 0, after, np.inf)
        pick = int(after.argmin())
        counts[pick] += 1
        if after[pick] < best_sse - 1e-12 * abs(best_sse):
            best_counts, best_sse = counts.copy(), after[pick]
    return best_counts / best_counts.sum()


def fit_shrinkage(stats: FitStats, weights: np.ndarray) -> float:
    """α ∈ [0, 1] minimising the squared error of ``c + α(Pw − c)``, with ``c`` the mean
    of the targets in ``stats`` (closed form, clipped)."""
    if not weights.any():
        return 0.0
    c = stats.mean
    ws = float(weights @ stats.s)
    num = float(weights @ stats.b) - c * stats.sum_y - c * ws + stats.n * c * c
    den = float(weights @ stats.gram @ weights) - 2 * c * ws + stats.n * c * c
    if den <= 1e-12 * max(stats.yy, 1.0):
        return 0.0
    return float(np.clip(num / den, 0.0, 1.0))


# Method name -> its weights from the stats (and the options it reads: top_k for mean,
# size for greedy). A new combiner is one function and one entry here.
COMBINERS: dict[str, Callable[..., np.ndarray]] = {
    "best": lambda stats, **_: _one_hot(int(stats.member_sse().argmin()), len(stats.s)),
    "mean": lambda stats, top_k, **_: mean_weights(stats, top_k),
    "weighted": lambda stats, **_: nnls_weights(stats),
    "greedy": lambda stats, size, max_models=None, **_: greedy_weights(stats, size, max_models),
}
METHODS = tuple(COMBINERS)

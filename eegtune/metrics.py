"""The challenge metric, exactly: NRMSE = rmse / std(y_true), population std, pooled.

Pooled means over every scored window at once (trials for Challenge 1, 2 s windows for
Challenge 2), never averaged per subject or per fold. Predicting the mean scores 1.0.
"""

from __future__ import annotations

import numpy as np

CHALLENGE_WEIGHTS = {1: 0.3, 2: 0.7}


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} values but y_pred has {y_pred.size}")
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def nrmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The challenge's normalised RMSE (ddof=0 standard deviation of the targets)."""
    std = float(np.std(np.asarray(y_true, dtype=np.float64), ddof=0))
    if std == 0.0:
        raise ValueError("NRMSE is undefined when every target is the same")
    return rmse(y_true, y_pred) / std


def nrmse_or_nan(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """NRMSE, or NaN where it is undefined (one held-out subject's constant Challenge 2
    score): for per-fold figures, which a pooled figure never replaces."""
    if np.ptp(np.asarray(y_true, dtype=np.float64)) == 0:
        return float("nan")
    return nrmse(y_true, y_pred)


def overall_score(c1: float, c2: float) -> float:
    """The leaderboard's overall score: 0.3·C1 + 0.7·C2 (lower is better)."""
    return CHALLENGE_WEIGHTS[1] * c1 + CHALLENGE_WEIGHTS[2] * c2


def error_sums(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Sufficient statistics to pool NRMSE exactly across folds or workers."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    return {
        "n": float(y.size),
        "sse": float(np.sum((y - p) ** 2)),
        "sum_y": float(y.sum()),
        "sum_y2": float(np.sum(y**2)),
    }


def pooled_nrmse(parts: list[dict[str, float]]) -> float:
    """NRMSE over the union of the windows behind several :func:`error_sums`."""
    n = sum(p["n"] for p in parts)
    if n == 0:
        raise ValueError("no windows to pool")
    mean = sum(p["sum_y"] for p in parts) / n
    var = sum(p["sum_y2"] for p in parts) / n - mean**2
    if var <= 0:
        raise ValueError("NRMSE is undefined when every target is the same")
    return float(np.sqrt(sum(p["sse"] for p in parts) / n / var))

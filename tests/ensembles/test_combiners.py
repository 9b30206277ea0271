"""The combiners against answers worked out by hand: sufficient statistics, the four
weighting methods on members whose optimal combination is known, and the shrinkage α."""

from __future__ import annotations

import numpy as np
import pytest

from eegtune.ensembles.combiners import (
    Combination,
    FitStats,
    fit_combination,
    fit_shrinkage,
    greedy_weights,
    mean_weights,
)


def direct_sums(preds: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray | float]:
    """The statistics FitStats should hold, summed over all rows at once in float64."""
    p = preds.astype(np.float64)
    t = y.astype(np.float64)
    err = t[:, None] - p
    return {
        "n": float(len(t)),
        "sum_y": t.sum(),
        "yy": (t * t).sum(),
        "s": p.sum(axis=0),
        "b": (t[:, None] * p).sum(axis=0),
        "gram": np.einsum("ri,rj->ij", p, p),
        "errors": np.einsum("ri,rj->ij", err, err),
    }


def orthogonal_errors(n: int, stds: list[float], seed: int) -> np.ndarray:
    """Columns that are exactly orthogonal, zero-mean, with mean square ``std²`` each: the
    error cross-products are then exactly diagonal, so the optimal weights are known."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, len(stds) + 1))
    raw[:, 0] = 1.0  # orthogonal to the constant column means zero mean
    q, _ = np.linalg.qr(raw)
    return q[:, 1:] * np.sqrt(n) * np.asarray(stds)


def assert_stats_equal(stats: FitStats, want: dict, rtol: float = 1e-9) -> None:
    assert stats.n == want["n"]
    for name in ("sum_y", "yy", "s", "b", "gram"):
        np.testing.assert_allclose(getattr(stats, name), want[name], rtol=rtol, err_msg=name)
    # error_products() is a difference of large sums, so compare against the scale of yy.
    np.testing.assert_allclose(
        stats.error_products(), want["errors"], rtol=rtol, atol=rtol * want["yy"]
    )


# --- FitStats ---------------------------------------------------------------------------


def test_stats_of_concatenation_equal_sum_of_parts():
    rng = np.random.default_rng(0)
    y = rng.normal(2.0, 1.0, size=300)
    preds = (y[:, None] + rng.normal(size=(300, 4))).astype(np.float32)
    parts = [FitStats.of(preds[a:b], y[a:b]) for a, b in ((0, 50), (50, 170), (170, 300))]
    total = parts[0] + parts[1] + parts[2]
    assert_stats_equal(total, direct_sums(preds, y))
    assert_stats_equal(FitStats.of(preds, y), direct_sums(preds, y))


def test_error_products_and_member_sse_match_numpy():
    rng = np.random.default_rng(1)
    y = rng.normal(size=200)
    preds = y[:, None] + rng.normal(scale=[0.5, 1.0, 2.0], size=(200, 3))
    stats = FitStats.of(preds, y)
    err = y[:, None] - preds
    want = np.array([[np.sum(err[:, i] * err[:, j]) for j in range(3)] for i in range(3)])
    np.testing.assert_allclose(stats.error_products(), want, rtol=1e-10)
    np.testing.assert_allclose(stats.member_sse(), (err**2).sum(axis=0), rtol=1e-10)
    assert stats.mean == pytest.approx(y.mean(), rel=1e-12)


def test_chunked_stats_match_direct_computation():
    rng = np.random.default_rng(2)
    n = 2 * 65_536 + 123  # three chunks, the last one partial
    y = rng.normal(5.0, 2.0, size=n).astype(np.float32)
    preds = (y[:, None] + rng.normal(size=(n, 3))).astype(np.float32)
    assert_stats_equal(FitStats.of(preds, y), direct_sums(preds, y), rtol=1e-9)


# --- weights with a known optimum ---------------------------------------------------------


def test_anti_correlated_pair_is_combined_half_and_half():
    rng = np.random.default_rng(3)
    n = 2000
    y = rng.normal(size=n)
    e = rng.normal(size=n)
    noise = rng.normal(scale=5.0, size=(n, 3))
    preds = np.column_stack([y + e, y - e, y[:, None] + noise])
    stats = FitStats.of(preds, y)

    weighted = fit_combination("weighted", stats).weights
    np.testing.assert_allclose(weighted, [0.5, 0.5, 0, 0, 0], atol=1e-3)

    greedy = fit_combination("greedy", stats, size=25).weights
    assert set(np.flatnonzero(greedy)) == {0, 1}
    np.testing.assert_allclose(greedy[:2], [0.5, 0.5], atol=0.05)
    assert greedy.sum() == pytest.approx(1.0)


def test_independent_errors_are_weighted_by_inverse_variance():
    # Errors of std 1, 2, 2: weights ∝ 1/σ² = 1, 1/4, 1/4, i.e. 2/3, 1/6, 1/6.
    n = 3000
    y = np.random.default_rng(4).normal(size=n)
    preds = y[:, None] - orthogonal_errors(n, [1.0, 2.0, 2.0], seed=5)
    stats = FitStats.of(preds, y)
    np.testing.assert_allclose(np.diag(stats.error_products()) / n, [1, 4, 4], rtol=1e-9)

    want = np.array([2 / 3, 1 / 6, 1 / 6])
    np.testing.assert_allclose(fit_combination("weighted", stats).weights, want, atol=1e-4)
    # With replacement, six picks (4, 1, 1) reach that optimum exactly.
    np.testing.assert_allclose(greedy_weights(stats, size=25), want, atol=1e-9)


def test_independent_errors_random_sample_weights():
    rng = np.random.default_rng(6)
    n = 100_000
    y = rng.normal(size=n)
    preds = y[:, None] + rng.normal(scale=[1.0, 2.0, 2.0], size=(n, 3))
    weights = fit_combination("weighted", FitStats.of(preds, y)).weights
    np.testing.assert_allclose(weights, [2 / 3, 1 / 6, 1 / 6], atol=0.02)


def test_weighted_never_worse_than_the_best_member():
    rng = np.random.default_rng(7)
    n = 500
    y = rng.normal(size=n)
    shared = rng.normal(size=n)
    preds = y[:, None] + 0.7 * shared[:, None] + rng.normal(scale=[0.3, 0.6, 1.0, 1.5], size=(n, 4))
    stats = FitStats.of(preds, y)
    w = fit_combination("weighted", stats, shrink=False).weights
    assert np.all(w >= 0)
    assert w.sum() == pytest.approx(1.0, abs=1e-9)
    sse = np.sum((y - preds @ w) ** 2)
    assert sse <= np.min(np.sum((y[:, None] - preds) ** 2, axis=0)) + 1e-9


def test_greedy_weights_are_counts_of_picks():
    rng = np.random.default_rng(8)
    n = 400
    y = rng.normal(size=n)
    preds = y[:, None] + rng.normal(scale=[0.8, 1.0, 1.1, 1.3, 3.0], size=(n, 5))
    size = 7
    w = greedy_weights(FitStats.of(preds, y), size)
    # Every weight is a whole number of picks, out of the same k <= size picks.
    whole = [k for k in range(1, size + 1) if np.allclose(w * k, np.round(w * k), atol=1e-9)]
    assert whole, w
    assert w.sum() == pytest.approx(1.0)
    assert np.all(w >= 0)


# --- best and mean ------------------------------------------------------------------------


def test_best_picks_lowest_sse_and_mean_averages_top_k():
    rng = np.random.default_rng(9)
    n = 1000
    y = rng.normal(size=n)
    preds = y[:, None] + rng.normal(scale=[1.5, 0.5, 2.0, 0.8, 1.2], size=(n, 5))
    stats = FitStats.of(preds, y)
    sse = np.sum((y[:, None] - preds) ** 2, axis=0)
    ranked = np.argsort(sse)
    assert list(ranked[:2]) == [1, 3]  # the construction did what it meant to

    best = fit_combination("best", stats, shrink=False)
    np.testing.assert_array_equal(best.weights, np.eye(5)[ranked[0]])
    assert best.alpha == 1.0

    mean = fit_combination("mean", stats, top_k=2)
    want = np.zeros(5)
    want[ranked[:2]] = 0.5
    np.testing.assert_array_equal(mean.weights, want)
    np.testing.assert_array_equal(mean_weights(stats, 10), np.full(5, 0.2))


def test_invalid_arguments_are_refused():
    rng = np.random.default_rng(10)
    y = rng.normal(size=20)
    stats = FitStats.of(y[:, None] + rng.normal(size=(20, 2)), y)
    with pytest.raises(ValueError, match="method must be one of"):
        fit_combination("median", stats)
    with pytest.raises(ValueError, match="top_k"):
        mean_weights(stats, 0)
    with pytest.raises(ValueError, match="size"):
        greedy_weights(stats, 0)


# --- shrinkage ----------------------------------------------------------------------------


def one_member_alpha(p: np.ndarray, y: np.ndarray) -> float:
    return fit_shrinkage(FitStats.of(p[:, None], y), np.array([1.0]))


def test_shrinkage_of_noise_is_zero_and_never_negative():
    rng = np.random.default_rng(11)
    n = 20_000
    y = rng.normal(3.0, 1.0, size=n)
    noise = rng.normal(3.0, 1.0, size=n)
    alpha = one_member_alpha(noise, y)
    assert 0.0 <= alpha < 0.03

    # A member anti-correlated with y has a negative least-squares α; it is clipped to 0.
    c = y.mean()
    flipped = c - (y - c)
    raw = np.sum((y - c) * (flipped - c)) / np.sum((flipped - c) ** 2)
    assert raw == pytest.approx(-1.0)
    assert one_member_alpha(flipped, y) == 0.0


def test_shrinkage_closed_forms():
    rng = np.random.default_rng(12)
    y = rng.normal(3.0, 1.0, size=5000)
    c = y.mean()
    assert one_member_alpha(y.copy(), y) == pytest.approx(1.0, abs=1e-12)
    assert one_member_alpha(c + 2 * (y - c), y) == pytest.approx(0.5, abs=1e-9)

    p = 0.8 * y + rng.normal(scale=0.9, size=len(y)) + 0.4
    want = np.clip(np.sum((y - c) * (p - c)) / np.sum((p - c) ** 2), 0, 1)
    assert 0 < want < 1
    assert one_member_alpha(p, y) == pytest.approx(want, rel=1e-9)
    assert fit_shrinkage(FitStats.of(p[:, None], y), np.zeros(1)) == 0.0


def test_fitted_combination_shrinks_towards_training_mean():
    rng = np.random.default_rng(13)
    y = rng.normal(7.0, 1.0, size=3000)
    preds = np.column_stack([y + rng.normal(scale=0.8, size=len(y)), rng.normal(7.0, size=len(y))])
    comb = fit_combination("best", FitStats.of(preds, y))
    np.testing.assert_array_equal(comb.weights, [1.0, 0.0])
    assert comb.centre == pytest.approx(y.mean(), rel=1e-12)
    assert 0 < comb.alpha < 1
    # α is the least-squares slope of y − c on p − c through the origin (the centre fixed).
    c = y.mean()
    slope = np.linalg.lstsq((preds[:, :1] - c), y - c, rcond=None)[0][0]
    assert comb.alpha == pytest.approx(slope, rel=1e-9)


# --- Combination.predict ------------------------------------------------------------------


def test_predict_matches_formula_by_hand():
    rng = np.random.default_rng(14)
    preds = rng.normal(size=(50, 3)).astype(np.float32)
    comb = Combination(weights=np.array([0.2, 0.0, 0.8]), alpha=0.7, centre=3.0)
    p64 = preds.astype(np.float64)
    want = 3.0 + 0.7 * (0.2 * p64[:, 0] + 0.8 * p64[:, 2] - 3.0)
    np.testing.assert_allclose(comb.predict(preds), want, rtol=1e-12)
    np.testing.assert_array_equal(comb.members, [0, 2])


def test_alpha_zero_predicts_the_centre_without_members():
    preds = np.random.default_rng(15).normal(size=(10, 3))
    comb = Combination(weights=np.array([0.5, 0.5, 0.0]), alpha=0.0, centre=-1.25)
    assert len(comb.members) == 0
    np.testing.assert_array_equal(comb.predict(preds), np.full(10, -1.25))
    # Members need not be loaded at all, so any number of columns, even none, works.
    np.testing.assert_array_equal(comb.predict(np.empty((4, 0))), np.full(4, -1.25))

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


# --- greedy: picks and the kept prefix, worked out by hand ---------------------------------


def stats_with_errors(errors: list[list[float]]) -> FitStats:
    """Stats whose error cross-products are exactly ``EᵀE``: the predictions are the targets
    minus ``E`` (small dyadic numbers, so every sum is exact in float64)."""
    e = np.asarray(errors, dtype=np.float64)
    y = np.array([1.5, -2.0, 0.25, 3.0])[: len(e)]
    return FitStats.of(y[:, None] - e, y)


# Errors (rows) [2, 2, 0], [0, 1, 0], [0, 0, 3] give R = [[4, 4, 0], [4, 5, 0], [0, 0, 9]]:
# members 0 and 1 share their error, member 2 is independent but worse alone.
# Sorted initialisation: member 0 (SSE 4); adding member 1 gives (4 + 5 + 2·4)/4 = 17/4 ≥ 4,
# so it stops there. Then each pick adds the member minimising
# (cᵀRc + 2(Rc)_i + R_ii)/(t + 1)², with c the counts after t picks:
#   pick 2: c=[1,0,0] → 0: 16/4, 1: 17/4, 2: 13/4 → member 2, [1,0,1], 13/4  (best)
#   pick 3: c=[1,0,1] → 0: 25/9, 1: 26/9, 2: 40/9 → member 0, [2,0,1], 25/9  (best)
#   pick 4: → member 0, [3,0,1], 45/16      pick 5: → member 2, [3,0,2], 72/25
#   pick 6: → member 0, [4,0,2], 25/9 (a tie, not kept)
#   pick 7: → member 0, [5,0,2], 136/49 < 25/9 (best)
#   pick 8: → 0, [6,0,2], 45/16    pick 9: → 2, [6,0,3], 25/9
#   pick 10: → 0, [7,0,3], 277/100 < 136/49 (best)
#   pick 11: → 0, [8,0,3], 337/121    pick 12: → 2, [8,0,4], 25/9
#   pick 13: → 0, [9,0,4], 36/13 < 277/100 (best: the optimum 9/13, 4/13 itself)
#   pick 14: → 0, [10,0,4], 136/49
# Picks: 0, 2, 0, 0, 2, 0, 0, 0, 2, 0, 0, 2, 0, 0; greedy(size) returns the best prefix.
SHARED_ERROR = [[2, 2, 0], [0, 1, 0], [0, 0, 3]]
SHARED_ERROR_KEPT = {
    1: [1, 0, 0],
    2: [1, 0, 1],
    3: [2, 0, 1],
    4: [2, 0, 1],
    5: [2, 0, 1],  # the last picks' counts, [3, 0, 2], are worse: the prefix is kept
    6: [2, 0, 1],
    7: [5, 0, 2],
    8: [5, 0, 2],
    9: [5, 0, 2],
    10: [7, 0, 3],
    11: [7, 0, 3],
    12: [7, 0, 3],
    13: [9, 0, 4],
    14: [9, 0, 4],
}

# Independent errors with R = diag(1, 2, 100): the initialisation takes members 0 and 1
# ((1 + 2)/4 = 3/4 < 1) and stops at member 2 ((1 + 2 + 100)/9 ≥ 3/4).
#   pick 3: c=[1,1,0] → 0: 6/9, 1: 9/9, 2: 103/9 → member 0, [2,1,0], 2/3 (best)
#   pick 4: → 0, [3,1,0], 11/16     pick 5: → 1, [3,2,0], 17/25   (both worse than 2/3)
INDEPENDENT_ERROR = [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 10]]
INDEPENDENT_ERROR_KEPT = {1: [1, 0, 0], 2: [1, 1, 0], 3: [2, 1, 0], 4: [2, 1, 0], 5: [2, 1, 0]}

# Errors [0, 1, 0], [0, 1, 0], [1, 0, -2] give R = [[1, 0, -2], [0, 2, 0], [-2, 0, 4]]:
# member 2's error is −2× member 0's. The initialisation takes all three, in sorted order:
# +1: (1 + 2)/4 = 3/4 < 1; +2: (1 + 2 + 4 − 2·2)/9 = 1/3 < 3/4. (Picking greedily from the
# start would pair 0 with 2 instead, (1 + 4 − 2·2)/4 = 1/4, and reach zero error at [2,0,1];
# the initialisation's member 1 stays in for good.)
#   pick 4: c=[1,1,1], Rc=[-1,2,2], cᵀRc=3 → 0: 2/16, 1: 9/16, 2: 11/16 → [2,1,1], 1/8 (best)
#   pick 5: c=[2,1,1], Rc=[0,2,0], cᵀRc=2 → 0: 3/25, 1: 8/25, 2: 6/25 → [3,1,1], 3/25 (best)
#   pick 6: c=[3,1,1], Rc=[1,2,-2], cᵀRc=3 → 0: 6/36, 1: 9/36, 2: 3/36 → [3,1,2], 1/12 (best)
#   pick 7: c=[3,1,2], Rc=[-1,2,2], cᵀRc=3 → 0: 2/49, 1: 9/49, 2: 11/49 → [4,1,2], 2/49 (best)
#   pick 8: c=[4,1,2], Rc=[0,2,0], cᵀRc=2 → 0: 3/64, 1: 8/64, 2: 6/64 → [5,1,2], 3/64 > 2/49
#   pick 9: c=[5,1,2], Rc=[1,2,-2], cᵀRc=3 → 0: 6/81, 1: 9/81, 2: 3/81 → [5,1,3], 1/27 (best)
ANTI_CORRELATED = [[0, 1, 0], [0, 1, 0], [1, 0, -2]]
ANTI_CORRELATED_KEPT = {
    1: [1, 0, 0],
    2: [1, 1, 0],
    3: [1, 1, 1],
    4: [2, 1, 1],
    5: [3, 1, 1],
    6: [3, 1, 2],
    7: [4, 1, 2],
    8: [4, 1, 2],  # the eighth pick is worse: the prefix of seven is kept
    9: [5, 1, 3],
}

# Errors [-1, -1, 0, 0], [0, 1, 2, 2], [1, 1, 0, -1] give R = [[2, 2, 0, -1],
# [2, 3, 2, 1], [0, 2, 4, 4], [-1, 1, 4, 5]]. The initialisation stops at its first refusal:
# +1: (2 + 3 + 2·2)/4 = 9/4 ≥ 2, so member 2 (which would have helped: (2 + 4)/4 = 3/2) is
# never tried, and greedy pairs member 0 with the worst member alone, 3:
#   pick 2: c=[1,0,0,0], Rc=[2,2,0,-1], cᵀRc=2 → 0: 8/4, 1: 9/4, 2: 6/4, 3: 5/4
#           → [1,0,0,1], 5/4 (best)
#   pick 3: c=[1,0,0,1], Rc=[1,3,4,4], cᵀRc=5 → 0: 9/9, 1: 14/9, 2: 17/9, 3: 18/9
#           → [2,0,0,1], 1 (best)
#   pick 4: c=[2,0,0,1], Rc=[3,5,4,3], cᵀRc=9 → 0: 17/16, 1: 22/16, 2: 21/16, 3: 20/16
#           → [3,0,0,1], 17/16
#   pick 5: → 3, [3,0,0,2], 26/25 (both worse than 1: the prefix of three is kept)
FIRST_REFUSAL = [[-1, -1, 0, 0], [0, 1, 2, 2], [1, 1, 0, -1]]
FIRST_REFUSAL_KEPT = {
    1: [1, 0, 0, 0],
    2: [1, 0, 0, 1],
    3: [2, 0, 0, 1],
    4: [2, 0, 0, 1],
    5: [2, 0, 0, 1],
}


@pytest.mark.parametrize(
    ("errors", "kept"),
    [
        (SHARED_ERROR, SHARED_ERROR_KEPT),
        (INDEPENDENT_ERROR, INDEPENDENT_ERROR_KEPT),
        (ANTI_CORRELATED, ANTI_CORRELATED_KEPT),
        (FIRST_REFUSAL, FIRST_REFUSAL_KEPT),
    ],
    ids=["shared_error", "independent_error", "anti_correlated", "first_refusal"],
)
def test_greedy_picks_and_kept_prefix_by_hand(errors, kept):
    stats = stats_with_errors(errors)
    e = np.asarray(errors, dtype=np.float64)
    np.testing.assert_array_equal(stats.error_products(), e.T @ e)  # exact, as the comments use
    for size, counts in kept.items():
        want = np.asarray(counts, dtype=np.float64) / sum(counts)
        np.testing.assert_allclose(
            greedy_weights(stats, size), want, rtol=0, atol=1e-12, err_msg=f"size={size}"
        )
    # fit_combination("greedy") uses the same weights.
    size = max(kept)
    np.testing.assert_allclose(
        fit_combination("greedy", stats, size=size, shrink=False).weights,
        np.asarray(kept[size]) / sum(kept[size]),
        atol=1e-12,
    )

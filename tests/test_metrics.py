import numpy as np
import pytest

from eegtune.metrics import nrmse, overall_score


def test_nrmse_is_rmse_over_population_std():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert nrmse(y, np.full(4, y.mean())) == pytest.approx(1.0)
    pred = y + np.array([0.5, -0.5, 0.5, -0.5])
    assert nrmse(y, pred) == pytest.approx(0.5 / np.std(y, ddof=0))
    # Not the range: dividing by max-min would give 0.5 / 3.
    assert nrmse(y, pred) != pytest.approx(0.5 / 3)


def test_nrmse_refuses_mismatched_or_constant_targets():
    with pytest.raises(ValueError, match="y_pred has 2"):
        nrmse(np.arange(3.0), np.zeros(2))
    with pytest.raises(ValueError, match="undefined"):
        nrmse(np.ones(3), np.zeros(3))


def test_overall_score_weights():
    assert overall_score(1.0, 0.0) == pytest.approx(0.3)
    assert overall_score(0.91394, 0.98519) == pytest.approx(0.96381, abs=1e-4)


def test_pooled_nrmse_from_sums_equals_nrmse_of_the_union():
    from eegtune.metrics import error_sums, pooled_nrmse

    rng = np.random.default_rng(0)
    parts, ys, ps = [], [], []
    for n in (5, 17, 40):
        y, p = rng.normal(1.5, 0.4, n), rng.normal(1.5, 0.4, n)
        parts.append(error_sums(y, p))
        ys.append(y)
        ps.append(p)
    assert pooled_nrmse(parts) == pytest.approx(nrmse(np.concatenate(ys), np.concatenate(ps)))

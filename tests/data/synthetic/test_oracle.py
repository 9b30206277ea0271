import numpy as np
import pytest

from eegtune.data.synthetic.oracle import (
    challenge1_floor,
    challenge1_posterior_mean,
    challenge2_floor,
)


def test_challenge1_floor_matches_gaussian_theory_without_censoring():
    rng = np.random.default_rng(0)
    rt = rng.normal(1.5, 0.2, 40000)  # almost all inside [0.5, 2.5)
    jitter = 0.15
    obs = rt + rng.normal(0, jitter, rt.size)
    expected = np.sqrt(jitter**2 / (0.2**2 + jitter**2))
    assert challenge1_floor(rt, obs, jitter) == pytest.approx(expected, abs=0.01)


def test_challenge1_censored_trials_fall_back_towards_the_tails():
    rng = np.random.default_rng(1)
    rt = rng.normal(1.6, 0.5, 20000)
    obs = rt + rng.normal(0, 0.1, rt.size)
    post = challenge1_posterior_mean(rt, obs, 0.1)
    late = obs >= 2.5
    assert post[late].min() > 2.3  # only "after the window" is known: predict late
    assert abs(post[~late & (obs > 0.5)] - obs[~late & (obs > 0.5)]).mean() < 0.1


def test_challenge2_floor_tends_to_sqrt_one_minus_rho_squared():
    rng = np.random.default_rng(2)
    rho, n = 0.35, 50000
    z = rng.standard_normal(n)
    y = 0.75 * (rho * z + np.sqrt(1 - rho**2) * rng.standard_normal(n))
    windows = rng.integers(50, 120, n)
    floor = challenge2_floor(y, z, windows, 0.0, 0.75, rho)
    assert floor == pytest.approx(np.sqrt(1 - rho**2), abs=0.01)

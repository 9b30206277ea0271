"""The oracle floors: the best NRMSE any decoder can reach on a synthetic data set.

Both floors are computed from the generative model on the realised data set, with the
challenge metric (rmse / population std of the targets, pooled over windows):

- **Challenge 1.** The only information about a trial's RT in its window is the motor
  potential, centred on press + N(0, jitter²). A decoder that located that potential
  exactly would see ``obs = rt + jitter`` when it falls inside the window, and only
  "before" or "after" the window otherwise. The Bayes-optimal prediction is the
  posterior mean of rt under the data set's own RT distribution (smoothed histogram
  prior). Background noise only
  makes locating the potential harder, so this is a floor, not a target.
- **Challenge 2.** The EEG carries the subject's spectral trait ``z``, and
  (y − μ)/σ = ρ·z + √(1 − ρ²)·e. Knowing ``z`` exactly, the best prediction is
  μ + σ·ρ·z; its pooled NRMSE over the scored windows is the floor.
"""

from __future__ import annotations

import numpy as np

from eegtune.metrics import nrmse

WINDOW_START_S = 0.5
WINDOW_END_S = 2.5


def challenge1_posterior_mean(
    rt: np.ndarray, observed: np.ndarray, jitter_s: float, grid_step: float = 0.005
) -> np.ndarray:
    """Posterior mean of rt given the jittered latent press time (or its absence)."""
    grid = np.arange(0.0, 4.0 + grid_step, grid_step)
    hist, _ = np.histogram(
        rt, bins=len(grid), range=(grid[0] - grid_step / 2, grid[-1] + grid_step / 2)
    )
    kernel = np.exp(-0.5 * (np.arange(-8, 9) * grid_step / 0.02) ** 2)
    prior = np.convolve(hist.astype(float), kernel / kernel.sum(), mode="same") + 1e-12
    like = np.exp(-0.5 * ((observed[:, None] - grid[None, :]) / jitter_s) ** 2)
    # Outside the window the decoder still knows on which side the potential fell (the
    # rebound of an early press shows at the window's start), so censoring is one-sided.
    from scipy.stats import norm

    early, late = observed < WINDOW_START_S, observed >= WINDOW_END_S
    like[early] = norm.cdf((WINDOW_START_S - grid) / jitter_s)[None, :]
    like[late] = norm.sf((WINDOW_END_S - grid) / jitter_s)[None, :]
    post = like * prior[None, :]
    return (post @ grid) / post.sum(axis=1)


def challenge1_floor(rt: np.ndarray, observed: np.ndarray, jitter_s: float) -> float:
    return nrmse(rt, challenge1_posterior_mean(rt, observed, jitter_s))


def challenge2_floor(
    y: np.ndarray, trait: np.ndarray, windows: np.ndarray, mu: float, sigma: float, rho: float
) -> float:
    """Pooled over windows: each subject's score repeated once per scored window."""
    y_w = np.repeat(y, windows)
    pred_w = np.repeat(mu + sigma * rho * trait, windows)
    return nrmse(y_w, pred_w)

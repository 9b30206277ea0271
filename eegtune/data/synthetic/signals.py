"""Synthetic 129-channel EEG: 1/f background, alpha, and the two planted effects.

- Background: a dozen spatially smooth 1/f sources mixed onto the GSN-HydroCel-129
  cap, plus sensor noise; Cz, the reference, stays nearly flat.
- Alpha: an occipital 8–12 Hz rhythm, stronger with eyes closed.
- Challenge 1: a response-locked motor potential over the motor cortex opposite the
  pressing hand, centred on a *latent* press time = logged press + Gaussian jitter.
  The jitter (and nothing else) is what the oracle floor accounts for.
- Challenge 2: the subject's spectral trait ``z`` scales alpha power and steepens the
  aperiodic exponent; ``z`` correlates weakly with the externalizing score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_EEG = 128  # E1…E128; Cz (the reference) is appended nearly flat
N_SOURCES = 12
# Nearest GSN-HydroCel-129 electrodes to 10-20 sites: Oz, C3, C4, Pz.
OZ, C3, C4, PZ = "E75", "E36", "E104", "E62"


@dataclass(frozen=True)
class SubjectTraits:
    spectral_trait: float  # z ~ N(0, 1): drives alpha power and the 1/f exponent
    alpha_freq: float
    motor_amplitude_uv: float

    @property
    def alpha_gain(self) -> float:
        return float(np.exp(0.35 * self.spectral_trait))

    @property
    def aperiodic_exponent(self) -> float:
        return float(np.clip(1.3 + 0.2 * self.spectral_trait, 0.6, 2.2))


def _positions() -> tuple[np.ndarray, list[str]]:
    import mne

    montage = mne.channels.make_standard_montage("GSN-HydroCel-129")
    pos = montage.get_positions()["ch_pos"]
    names = [f"E{i}" for i in range(1, N_EEG + 1)]
    xyz = np.array([pos[n] for n in names])
    return xyz / np.linalg.norm(xyz, axis=1, keepdims=True), names


class HeadModel:
    """Fixed spatial maps for one synthetic data set (seeded, shared by all subjects)."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng([seed, 7])
        xyz, names = _positions()
        index = {n: i for i, n in enumerate(names)}

        def blob(centre: np.ndarray, width: float) -> np.ndarray:
            return np.exp(-np.sum((xyz - centre) ** 2, axis=1) / (2 * width**2))

        centres = xyz[rng.choice(N_EEG, N_SOURCES, replace=False)]
        self.mixing = np.stack([blob(c, 0.45) for c in centres], axis=1)  # (128, K)
        self.mixing *= rng.uniform(0.6, 1.4, size=(1, N_SOURCES))
        self.alpha_map = blob(xyz[index[OZ]], 0.5) + 0.4 * blob(xyz[index[PZ]], 0.4)
        left, right = blob(xyz[index[C3]], 0.3), blob(xyz[index[C4]], 0.3)
        # A right-hand press is seen over the left motor cortex, and vice versa.
        self.motor_map = {"right": left + 0.3 * right, "left": right + 0.3 * left}
        self.visual_map = blob(xyz[index[OZ]], 0.35)


def _colored_noise(
    rng: np.random.Generator, n_rows: int, n_times: int, sfreq: float, shape: np.ndarray
) -> np.ndarray:
    """Unit-variance noise with spectral amplitude ``shape`` (one value per rfft bin)."""
    spec = rng.standard_normal((n_rows, len(shape))) + 1j * rng.standard_normal(
        (n_rows, len(shape))
    )
    out = np.fft.irfft(spec * shape, n=n_times, axis=1)
    return out / (out.std(axis=1, keepdims=True) + 1e-12)


def background(
    rng: np.random.Generator,
    head: HeadModel,
    traits: SubjectTraits,
    n_times: int,
    sfreq: float,
    eyes_closed: np.ndarray | None = None,
) -> np.ndarray:
    """(129, n_times) float64 µV: mixed 1/f sources, alpha, sensor noise, flat Cz."""
    freqs = np.fft.rfftfreq(n_times, 1.0 / sfreq)
    # The competition copies are band-passed from 0.5 Hz; start the 1/f there too.
    aperiodic = np.where(
        freqs >= 0.5, np.maximum(freqs, 0.5) ** (-traits.aperiodic_exponent / 2), 0
    )
    sources = _colored_noise(rng, N_SOURCES, n_times, sfreq, aperiodic) * 9.0
    eeg = head.mixing @ sources
    alpha_shape = np.exp(-((freqs - traits.alpha_freq) ** 2) / (2 * 0.8**2))
    alpha = _colored_noise(rng, 1, n_times, sfreq, alpha_shape)[0] * 5.0 * traits.alpha_gain
    if eyes_closed is not None:
        alpha = alpha * np.where(eyes_closed, 2.5, 1.0)
    eeg += np.outer(head.alpha_map, alpha)
    eeg += rng.standard_normal((N_EEG, n_times)) * 3.0
    if sfreq > 120:
        # The 500 Hz originals still carry 60 Hz mains; the 100 Hz copies were filtered.
        t = np.arange(n_times) / sfreq
        phase = rng.uniform(0, 2 * np.pi, size=(N_EEG, 1))
        eeg += 4.0 * np.sin(2 * np.pi * 60.0 * t + phase)
    cz = rng.standard_normal((1, n_times)) * 0.05
    return np.vstack([eeg, cz])


def _add_template(
    data: np.ndarray, sfreq: float, centre_s: float, spatial: np.ndarray, template
) -> None:
    half = int(0.6 * sfreq)
    c = int(round(centre_s * sfreq))
    lo, hi = max(c - half, 0), min(c + half + 1, data.shape[1])
    if lo >= hi:
        return
    tau = (np.arange(lo, hi) - centre_s * sfreq) / sfreq
    data[:N_EEG, lo:hi] += np.outer(spatial, template(tau))


def motor_template(tau: np.ndarray) -> np.ndarray:
    """Unit-amplitude response-locked shape: a negativity at the press, then a rebound."""
    return -np.exp(-((tau + 0.05) ** 2) / (2 * 0.08**2)) + 0.6 * np.exp(
        -((tau - 0.25) ** 2) / (2 * 0.12**2)
    )


def visual_template(tau: np.ndarray) -> np.ndarray:
    """Target-locked positivity about 300 ms after the contrast ramp starts."""
    return np.exp(-((tau - 0.3) ** 2) / (2 * 0.07**2))


def add_motor_potentials(
    data: np.ndarray,
    sfreq: float,
    head: HeadModel,
    latent_times: np.ndarray,
    sides: list[str],
    amplitudes: np.ndarray,
) -> None:
    for t, side, amp in zip(latent_times, sides, amplitudes, strict=True):
        _add_template(data, sfreq, float(t), head.motor_map[side] * amp, motor_template)


def add_visual_responses(
    data: np.ndarray, sfreq: float, head: HeadModel, target_times: np.ndarray
) -> None:
    for t in target_times:
        _add_template(data, sfreq, float(t), head.visual_map * 4.0, visual_template)

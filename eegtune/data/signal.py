"""Read one recording's signal through MNE: canonical channels, µV, 100 Hz.

Every recording leaves :func:`read_signal` as float32 microvolts of shape (129, n_times)
in the order E1…E128, Cz at 100 Hz, or raises :class:`RecordingError` naming the file.
The competition copies are 100 Hz BDF; the originals are 500 Hz EEGLAB SET files, which
are resampled with a polyphase FIR whose low-pass stops aliasing above the new Nyquist.

:func:`read_scorer_signal` reads what the challenge's scorer feeds a submission instead:
MNE's volts cast to float32, in the file's own channel order, at the file's 100 Hz.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from eegtune.data.bdf import read_bdf_header
from eegtune.data.errors import RecordingError

CHANNELS: tuple[str, ...] = (*(f"E{i}" for i in range(1, 129)), "Cz")
N_CHANNELS = len(CHANNELS)
TARGET_SFREQ = 100.0
SUPPORTED_SFREQS = (100.0, 500.0)


@dataclass(frozen=True)
class Signal:
    data: np.ndarray  # float32, (129, n_times), in ``unit``
    sfreq: float  # always TARGET_SFREQ after reading
    source_sfreq: float
    unit: str = "µV"  # "V" from read_scorer_signal only

    @property
    def n_times(self) -> int:
        return int(self.data.shape[1])

    @property
    def duration(self) -> float:
        return self.n_times / self.sfreq


def _check_set_size(path: Path) -> None:
    """EEGLAB keeps the samples in a .fdt beside the .set; a short one is a truncation."""
    fdt = path.with_suffix(".fdt")
    if not fdt.exists():
        return
    from scipy.io import loadmat

    try:
        meta = loadmat(path, squeeze_me=True, variable_names=["EEG", "nbchan", "pnts", "trials"])
    except Exception as exc:  # scipy raises several types for damaged MAT files
        raise RecordingError(path, f"corrupt EEGLAB file: {exc}") from exc
    eeg = meta.get("EEG")
    get = (lambda k: eeg[k].item()) if eeg is not None else (lambda k: meta[k])
    expected = 4 * int(get("nbchan")) * int(get("pnts")) * int(get("trials"))
    size = fdt.stat().st_size
    if size < expected:
        raise RecordingError(fdt, f"truncated EEGLAB data: {size} bytes, expected {expected}")


def _read_raw(path: Path):  # -> mne.io.BaseRaw
    import mne

    suffix = path.suffix.lower()
    try:
        if suffix == ".bdf":
            read_bdf_header(path)
            return mne.io.read_raw_bdf(path, preload=True, verbose="error")
        if suffix == ".set":
            _check_set_size(path)
            return mne.io.read_raw_eeglab(path, preload=True, verbose="error")
        if suffix == ".edf":
            return mne.io.read_raw_edf(path, preload=True, verbose="error")
    except RecordingError:
        raise
    except Exception as exc:  # MNE and its readers raise many types for damaged files
        raise RecordingError(path, f"unreadable signal file ({type(exc).__name__}: {exc})") from exc
    raise RecordingError(path, f"unsupported signal format {suffix!r} (expected .bdf or .set)")


def canonical_order(path: str | Path, ch_names: list[str]) -> np.ndarray:
    """Indices that put ``ch_names`` into E1…E128, Cz order, or a clear error."""
    if len(ch_names) != N_CHANNELS:
        raise RecordingError(
            path, f"has {len(ch_names)} channels, expected {N_CHANNELS} (E1…E128, then Cz)"
        )
    index = {name: i for i, name in enumerate(ch_names)}
    missing = [c for c in CHANNELS if c not in index]
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise RecordingError(path, f"channel names differ from E1…E128, Cz: missing {shown}")
    return np.array([index[c] for c in CHANNELS])


def resample_to_target(data: np.ndarray, sfreq: float) -> np.ndarray:
    """Polyphase resampling to 100 Hz; scipy's Kaiser FIR is the anti-alias filter."""
    if sfreq == TARGET_SFREQ:
        return data
    up, down = 1, int(round(sfreq / TARGET_SFREQ))
    return resample_poly(data, up, down, axis=1).astype(np.float32)


def _checked_raw(path: Path):  # -> (mne.io.BaseRaw, sfreq, canonical order)
    if not path.exists():
        raise RecordingError(path, "signal file is missing")
    logging.getLogger("mne").setLevel(logging.ERROR)
    raw = _read_raw(path)
    sfreq = float(raw.info["sfreq"])
    if not any(abs(sfreq - s) < 1e-6 for s in SUPPORTED_SFREQS):
        raise RecordingError(path, f"sampling rate {sfreq:g} Hz is not 100 or 500 Hz")
    if raw.n_times == 0:
        raise RecordingError(path, "zero-length recording: no samples")
    return raw, sfreq, canonical_order(path, list(raw.ch_names))


def _finite(path: Path, data: np.ndarray) -> np.ndarray:
    if not np.isfinite(data).all():
        raise RecordingError(path, "signal contains NaN or infinite samples")
    return np.ascontiguousarray(data, dtype=np.float32)


def read_signal(path: str | Path) -> Signal:
    """Read a BDF or EEGLAB recording as canonical float32 µV at 100 Hz."""
    path = Path(path)
    raw, sfreq, order = _checked_raw(path)
    data = raw.get_data()[order] * 1e6  # MNE works in volts; the store keeps µV
    data = resample_to_target(data.astype(np.float32), sfreq)
    return Signal(data=_finite(path, data), sfreq=TARGET_SFREQ, source_sfreq=sfreq)


def read_scorer_signal(path: str | Path) -> Signal:
    """The recording as the challenge's scorer hands it to a submission: MNE's float64
    volts cast to float32, channels in the file's order (the competition copies store
    E1…E128, Cz), never rescaled or resampled. Only the 100 Hz copies are scored."""
    path = Path(path)
    raw, sfreq, _ = _checked_raw(path)
    if abs(sfreq - TARGET_SFREQ) > 1e-6:
        raise RecordingError(
            path, f"is {sfreq:g} Hz; the scorer reads the 100 Hz competition copies (R*_L100_bdf)"
        )
    data = raw.get_data().astype(np.float32)
    return Signal(data=_finite(path, data), sfreq=sfreq, source_sfreq=sfreq, unit="V")

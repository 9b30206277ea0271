"""Where windows are cut: Challenge 1 trial windows and Challenge 2 fixed windows.

- Challenge 1: one window per scored trial, [stimulus + 0.5 s, stimulus + 2.5 s),
  200 samples at 100 Hz, shape (129, 200).
- Challenge 2: 4 s windows with a 2 s stride over the whole recording, the last partial
  window dropped, shape (129, 400). The scorer's random 2 s crop happens at training
  time, not here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from eegtune.data.errors import RecordingError
from eegtune.data.signal import Signal

C1_OFFSET_S = 0.5
C1_LENGTH_S = 2.0
C2_LENGTH_S = 4.0
C2_STRIDE_S = 2.0


@dataclass
class Windows:
    eeg: np.ndarray  # (n, 129, n_times) float32
    meta: pd.DataFrame  # one row per window

    def __len__(self) -> int:
        return len(self.meta)


def check_events_within(signal: Signal, events: pd.DataFrame, path) -> None:
    """Events after the last sample mean the events and the signal do not belong together."""
    last = float(events["onset"].max()) if len(events) else 0.0
    # One sample of slack: the closing marker of a run is often logged on the last sample.
    if last > signal.duration + 1.0 / signal.sfreq:
        raise RecordingError(
            path, f"events run to {last:.3f} s but the signal ends at {signal.duration:.3f} s"
        )


def _take(data: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    idx = starts[:, None] + np.arange(length)[None, :]
    return np.ascontiguousarray(data[:, idx].transpose(1, 0, 2))


def cut_challenge1(signal: Signal, trials: pd.DataFrame) -> tuple[Windows, int]:
    """Windows for the scored trials; also the number dropped for running off the end."""
    length = int(round(C1_LENGTH_S * signal.sfreq))
    starts = np.rint((trials["stimulus_onset"].to_numpy() + C1_OFFSET_S) * signal.sfreq)
    starts = starts.astype(np.int64)
    fits = (starts >= 0) & (starts + length <= signal.n_times)
    kept = trials[fits].reset_index(drop=True)
    meta = pd.DataFrame(
        {
            "window_index": np.arange(len(kept), dtype=np.int32),
            "window_start": starts[fits] / signal.sfreq,
            "target": kept["rt_from_stimulus"].to_numpy(dtype=np.float32),
            "trial_index": kept["trial_index"].to_numpy(dtype=np.int32),
            "correct": kept["correct"].to_numpy(dtype=bool),
            "stimulus_side": kept["stimulus_side"].astype(str).to_numpy(),
            "response_side": kept["response_side"].astype(str).to_numpy(),
        }
    )
    return Windows(_take(signal.data, starts[fits], length), meta), int((~fits).sum())


def cut_challenge2(signal: Signal, target: float) -> Windows:
    length = int(round(C2_LENGTH_S * signal.sfreq))
    stride = int(round(C2_STRIDE_S * signal.sfreq))
    n = (signal.n_times - length) // stride + 1 if signal.n_times >= length else 0
    starts = np.arange(n, dtype=np.int64) * stride
    meta = pd.DataFrame(
        {
            "window_index": np.arange(n, dtype=np.int32),
            "window_start": starts / signal.sfreq,
            "target": np.full(n, target, dtype=np.float32),
        }
    )
    return Windows(_take(signal.data, starts, length), meta)

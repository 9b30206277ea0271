import numpy as np
import pandas as pd
import pytest

from eegtune.data.errors import RecordingError
from eegtune.data.signal import Signal
from eegtune.data.windows import check_events_within, cut_challenge1, cut_challenge2


def ramp_signal(n_times: int) -> Signal:
    # Each sample holds its own index, so a window's first value is its start sample.
    data = np.tile(np.arange(n_times, dtype=np.float32), (129, 1))
    return Signal(data=data, sfreq=100.0, source_sfreq=100.0)


def trials(stims, rts):
    return pd.DataFrame(
        {
            "trial_index": np.arange(len(stims)),
            "stimulus_onset": stims,
            "rt_from_stimulus": rts,
            "correct": True,
            "stimulus_side": "left",
            "response_side": "left",
        }
    )


def test_challenge1_window_starts_half_a_second_after_the_stimulus():
    win, dropped = cut_challenge1(ramp_signal(3000), trials([10.0, 12.344], [1.2, 0.9]))
    assert dropped == 0
    assert win.eeg.shape == (2, 129, 200)
    assert win.eeg[0, 0, 0] == 1050 and win.eeg[0, 0, -1] == 1249
    assert win.eeg[1, 0, 0] == round((12.344 + 0.5) * 100)
    assert win.meta["target"].tolist() == pytest.approx([1.2, 0.9])


def test_challenge1_window_past_the_end_is_dropped_and_counted():
    win, dropped = cut_challenge1(ramp_signal(1300), trials([5.0, 10.6], [1.0, 1.0]))
    assert len(win) == 1 and dropped == 1


def test_challenge2_windows_are_4s_with_2s_stride_without_partial_tail():
    win = cut_challenge2(ramp_signal(1150), target=0.3)
    assert win.eeg.shape == (4, 129, 400)
    assert [w[0, 0] for w in win.eeg] == [0, 200, 400, 600]
    assert np.all(win.meta["target"] == np.float32(0.3))


def test_challenge2_needs_four_seconds():
    assert len(cut_challenge2(ramp_signal(399), target=0.0)) == 0
    assert len(cut_challenge2(ramp_signal(400), target=0.0)) == 1


def test_events_after_the_signal_end_are_refused():
    sig = ramp_signal(1000)
    check_events_within(sig, pd.DataFrame({"onset": [1.0, 10.0]}), "ev.tsv")
    with pytest.raises(RecordingError, match=r"events run to 12\.500 s"):
        check_events_within(sig, pd.DataFrame({"onset": [1.0, 12.5]}), "ev.tsv")

import numpy as np
import pytest

from eegtune.data.bdf import write_bdf
from eegtune.data.errors import RecordingError
from eegtune.data.signal import CHANNELS, read_signal, resample_to_target
from eegtune.data.synthetic.writers import write_set


def test_channels_are_put_in_canonical_order(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((129, 500)).astype(np.float32) * 10
    order = rng.permutation(129)
    path = tmp_path / "shuffled.bdf"
    write_bdf(path, x[order], 100, [CHANNELS[i] for i in order])
    sig = read_signal(path)
    np.testing.assert_allclose(sig.data, x, atol=0.01)


@pytest.mark.parametrize("n_channels", [128, 130])
def test_wrong_channel_count_is_refused(tmp_path, n_channels):
    names = [f"E{i}" for i in range(1, n_channels + 1)]
    path = tmp_path / "x.bdf"
    write_bdf(path, np.zeros((n_channels, 300), np.float32), 100, names)
    with pytest.raises(RecordingError, match=f"has {n_channels} channels, expected 129"):
        read_signal(path)


def test_unsupported_sampling_rate_is_refused(tmp_path):
    path = tmp_path / "x.bdf"
    write_bdf(path, np.zeros((129, 1000), np.float32), 250, list(CHANNELS))
    with pytest.raises(RecordingError, match="250 Hz is not 100 or 500 Hz"):
        read_signal(path)


def test_resampling_keeps_alpha_and_rejects_mains_instead_of_aliasing():
    t = np.arange(5000 * 4) / 500.0
    alpha = np.sin(2 * np.pi * 10 * t)
    mains = np.sin(2 * np.pi * 60 * t)  # would alias to 40 Hz at 100 Hz without a filter
    out_alpha = resample_to_target(np.tile(alpha, (2, 1)).astype(np.float32), 500.0)
    out_mains = resample_to_target(np.tile(mains, (2, 1)).astype(np.float32), 500.0)
    assert out_alpha.shape == (2, 4000)
    core = slice(200, -200)  # away from the filter's edge transients
    assert out_alpha[0, core].std() == pytest.approx(alpha.std(), rel=0.02)
    assert out_mains[0, core].std() < 0.01 * mains.std()


def test_eeglab_500hz_reads_as_100hz_microvolts(tmp_path):
    t = np.arange(2500) / 500.0
    x = np.tile(20 * np.sin(2 * np.pi * 6 * t), (129, 1)).astype(np.float32)
    x[5] *= 2
    path = tmp_path / "rec_eeg.set"
    write_set(path, x, 500)
    sig = read_signal(path)
    assert sig.source_sfreq == 500 and sig.sfreq == 100 and sig.data.shape == (129, 500)
    core = slice(50, -50)
    np.testing.assert_allclose(sig.data[0, core], x[0, ::5][core], atol=0.5)
    assert sig.data[5, core].std() == pytest.approx(2 * sig.data[0, core].std(), rel=1e-3)

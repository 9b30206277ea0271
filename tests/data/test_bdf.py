import numpy as np
import pytest

from eegtune.data.bdf import read_bdf_header, write_bdf
from eegtune.data.errors import RecordingError
from eegtune.data.signal import CHANNELS, read_signal


def _signal(n_times: int = 1000, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((129, n_times)) * 30).astype(np.float32)


def test_roundtrip_through_mne_is_exact_to_the_digital_step(tmp_path):
    x = _signal()
    path = tmp_path / "a.bdf"
    write_bdf(path, x, 100, list(CHANNELS))
    header = read_bdf_header(path)
    assert header.n_channels == 129 and header.sfreq == 100 and header.n_records == 10
    sig = read_signal(path)
    assert sig.data.shape == (129, 1000)
    assert np.abs(sig.data - x).max() < 0.01  # one 24-bit step is ~0.0095 µV


def test_truncated_file_names_the_byte_counts(tmp_path):
    path = tmp_path / "a.bdf"
    write_bdf(path, _signal(), 100, list(CHANNELS))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5000])
    with pytest.raises(RecordingError, match="truncated BDF") as info:
        read_signal(path)
    assert info.value.path == str(path)


def test_garbage_file_is_reported_as_corrupt(tmp_path):
    path = tmp_path / "a.bdf"
    path.write_bytes(b"not a bdf at all" * 100)
    with pytest.raises(RecordingError, match="corrupt BDF"):
        read_signal(path)


def test_zero_records_is_zero_length(tmp_path):
    path = tmp_path / "a.bdf"
    write_bdf(path, _signal(), 100, list(CHANNELS))
    head = read_bdf_header(path).header_bytes
    data = bytearray(path.read_bytes()[:head])
    data[236:244] = b"0".ljust(8)
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingError, match="zero-length"):
        read_signal(path)

"""Stream mode: every window once per epoch, batches that mix subjects, crops inside their
windows, and evaluation identical to memory mode's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eegtune.training import data_modes
from eegtune.training.config import TrainConfig
from eegtune.training.cross_validate import run_cv
from eegtune.training.fold_data import load_window_set
from eegtune.training.fold_stream import (
    FileWindowSet,
    StreamOptions,
    fold_files,
    stream_batches,
)
from eegtune.training.folds import store_subjects

SMALL = StreamOptions(interleave=3, chunk=4, buffer=16)  # small enough to cycle often


def _subjects(store, challenge: int) -> tuple[str, ...]:
    return tuple(store_subjects(store, challenge)["subject"])


@pytest.mark.parametrize("challenge", [1, 2])
def test_an_epoch_streams_every_window_once_in_mixed_batches(prepared_store, challenge):
    subjects = _subjects(prepared_store, challenge)
    files = fold_files(prepared_store, challenge, subjects)
    whole = load_window_set(prepared_store, challenge, subjects)
    # Windows are told apart by their samples (noise: the first eight never repeat).
    stored = {whole.eeg[i, 0, :8].tobytes(): i for i in range(len(whole))}
    assert len(stored) == len(whole)
    seen, mixed = [], []
    for x, y, s in stream_batches(files, 8, np.random.default_rng(0), challenge == 2, SMALL):
        assert x.dtype == np.float32 and x.shape[1:] == (129, 200) and len(x) == len(y) == len(s)
        mixed.append(len(set(s)))
        for row, target, subject in zip(x, y, s, strict=True):
            if challenge == 1:
                i = stored[row[0, :8].tobytes()]
                np.testing.assert_array_equal(row, whole.eeg[i])
                seen.append(i)
            else:  # a 2 s crop: a slice of one of the subject's 4 s windows
                i, offset = _locate(row, whole, subject)
                assert 0 <= offset <= 200
                seen.append(subject)
            assert whole.meta["subject"][i] == subject and whole.target[i] == target
    # Every window exactly once (Challenge 2's overlapping windows share their halves, so
    # there a crop names its subject, not its window), in batches mixing subjects.
    if challenge == 1:
        assert sorted(seen) == list(range(len(whole)))
    else:
        assert pd.Series(seen).value_counts().sort_index().tolist() == (
            whole.meta["subject"].value_counts().sort_index().tolist()
        )
    assert np.mean(mixed) > 1.5


def _locate(crop: np.ndarray, whole, subject: str) -> tuple[int, int]:
    """The window of ``subject`` and the offset in it that ``crop`` was cut from."""
    rows = np.flatnonzero(whole.meta["subject"].to_numpy() == subject)
    starts = whole.eeg[rows, 0, : whole.n_times - 200 + 1]
    for r, offset in zip(*np.nonzero(starts == crop[0, 0]), strict=True):
        if np.array_equal(whole.eeg[rows[r], :, offset : offset + 200], crop):
            return int(rows[r]), int(offset)
    raise AssertionError("a streamed crop is not a slice of any of its subject's windows")


def test_streaming_is_seeded_and_changes_every_epoch(prepared_store):
    files = fold_files(prepared_store, 1, _subjects(prepared_store, 1))

    def targets(seed) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.concatenate([y for _, y, _ in stream_batches(files, 8, rng, False, SMALL)])

    np.testing.assert_array_equal(targets([0, 1]), targets([0, 1]))
    assert not np.array_equal(targets([0, 1]), targets([0, 2]))


@pytest.mark.parametrize(("challenge", "batch"), [(1, 7), (2, 50)])
def test_evaluation_reads_the_same_windows_and_crops_as_memory_mode(
    prepared_store, challenge, batch
):
    subjects = _subjects(prepared_store, challenge)[1:5]
    memory = load_window_set(prepared_store, challenge, subjects)
    streamed = FileWindowSet(fold_files(prepared_store, challenge, subjects))
    pd.testing.assert_frame_equal(streamed.meta, memory.meta)
    a, b = list(memory.eval_batches(batch)), list(streamed.eval_batches(batch))
    assert [len(x) for x in a] == [len(x) for x in b]  # batch boundaries across files too
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_cv_in_stream_mode_predicts_the_same_windows(prepared_store, tmp_path):
    hp = TrainConfig(model="ridge_bandpower")
    memory = run_cv(prepared_store, 2, hp, tmp_path / "m", n_folds=3, data_mode="memory")
    stream = run_cv(prepared_store, 2, hp, tmp_path / "s", n_folds=3, data_mode="stream")
    assert stream.data_mode == "stream" and "stream mode" in stream.data_note
    key = ["subject", "recording", "window_index", "fold"]
    pd.testing.assert_frame_equal(memory.oof[key], stream.oof[key])
    # A closed-form model sees the same (evaluation-cropped) windows either way.
    # Bit-identical today; atol because some predictions lie near 0, where rtol alone
    # would demand bit-identity from every BLAS.
    np.testing.assert_allclose(
        memory.oof["prediction"], stream.oof["prediction"], rtol=1e-5, atol=1e-6
    )


def test_auto_streams_when_the_windows_do_not_fit(prepared_store, monkeypatch):
    need = data_modes.store_size(prepared_store, 2).float32_bytes
    monkeypatch.setattr(data_modes, "available_memory", lambda: 4 * need)
    assert data_modes.choose_cv_mode("auto", prepared_store, 2)[0] == "memory"
    monkeypatch.setattr(data_modes, "available_memory", lambda: need)  # half is set aside
    mode, note = data_modes.choose_cv_mode("auto", prepared_store, 2)
    assert mode == "stream" and note.startswith("data: stream mode (auto:")
    with pytest.raises(ValueError, match="data mode"):
        data_modes.choose_cv_mode("disk", prepared_store, 2)


def test_a_damaged_file_is_named_when_streamed(prepared_store, copy_tree):
    store = copy_tree(prepared_store, "store")
    files = [Path(f) for f in fold_files(store, 1, _subjects(store, 1))]
    files[2].write_bytes(files[2].read_bytes()[:-2000])  # truncated behind the manifest's back
    with pytest.raises(OSError, match=rf"{files[2].name}: cannot stream its windows"):
        for _ in stream_batches(files, 8, np.random.default_rng(0), False, SMALL):
            pass

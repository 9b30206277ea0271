"""Challenge 2 crops: fresh random 2 s crops for training, the scorer's fixed crops for
evaluation, and the same evaluation crops for the closed-form models.

Most checks use a WindowSet whose samples encode where they came from,
``eeg[i, c, t] = 1000 * i + t + c / 256`` (exact in float32 below 2**16), so the window and
the offset of any crop can be read off its first sample, independently of the code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from eegtune.data.store import read_windows
from eegtune.metrics import rmse
from eegtune.models.baselines import RidgeBandpower
from eegtune.models.registry import get_model_class
from eegtune.training.config import FoldJob, TrainConfig, make_config
from eegtune.training.fold_data import (
    ID_COLUMNS,
    FoldSource,
    FoldSubjects,
    WindowSet,
    eval_arrays,
    eval_batches,
    scorer_crops,
    train_batches,
    using_fold_source,
)
from eegtune.training.reporting import LocalReporter, reporting_to
from eegtune.training.train_func import load_checkpoint, train_func

STORED = 400  # Challenge 2 stores 4 s windows at 100 Hz...
CROP = 200  # ...and every model sees 2 s of them
N_CHANS = 129


def encoded_windows(n: int, first: int = 0, n_times: int = STORED) -> WindowSet:
    """Windows ``first..first+n-1`` whose samples say which window and sample they are;
    the target of window i is i, so a batch's targets name its windows too."""
    i = np.arange(first, first + n, dtype=np.float64)[:, None, None]
    c = np.arange(N_CHANS, dtype=np.float64)[None, :, None]
    t = np.arange(n_times, dtype=np.float64)[None, None, :]
    eeg = (1000 * i + t + c / 256).astype(np.float32)
    assert np.array_equal(eeg.astype(np.float64), 1000 * i + t + c / 256)  # really exact
    meta = pd.DataFrame(
        {
            "subject": [f"S{k:03d}" for k in range(first, first + n)],
            "release": "R1",
            "recording": "rec",
            "window_index": np.arange(first, first + n, dtype=np.int32),
            "target": np.arange(first, first + n, dtype=np.float32),
        }
    )[ID_COLUMNS]
    return WindowSet(eeg, meta)


def decode(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(window number, offset) of every crop, read off its first sample."""
    first = crops[:, 0, 0].astype(np.int64)
    return first // 1000, first % 1000


def assert_exact_crops(crops: np.ndarray, windows: np.ndarray, eeg: np.ndarray, first: int = 0):
    """Every crop is ``eeg[window, :, o:o + 200]`` of the window it claims, with
    0 <= o <= 200; returns the offsets."""
    assert crops.shape == (len(windows), N_CHANS, CROP)
    which, offsets = decode(crops)
    np.testing.assert_array_equal(which, windows)
    assert ((offsets >= 0) & (offsets <= STORED - CROP)).all(), offsets
    for k, (w, o) in enumerate(zip(windows, offsets, strict=True)):
        np.testing.assert_array_equal(crops[k], eeg[w - first, :, o : o + CROP])
    return offsets


def draw_epoch(ws: WindowSet, rng: np.random.Generator, batch_size: int = 16):
    """One epoch of a Challenge 2 fold source: (window numbers, offsets) in batch order."""
    source = FoldSource(2, FoldSubjects((), (), ()), fit=ws, inner_val=ws)
    windows, offsets = [], []
    for x, y in source.train_batches(batch_size, rng):
        w = y.astype(np.int64)  # the target of window i is i
        offsets.append(assert_exact_crops(x, w, ws.eeg))
        windows.append(w)
    return np.concatenate(windows), np.concatenate(offsets)


# --- training: a fresh crop of every window, every epoch ---------------------------------


def test_training_crops_are_slices_of_their_own_window_fresh_each_epoch():
    ws = encoded_windows(50)
    w0, o0 = draw_epoch(ws, np.random.default_rng([0, 3, 0, 0]))
    w1, o1 = draw_epoch(ws, np.random.default_rng([0, 3, 0, 1]))
    # Every window once per epoch...
    assert sorted(w0) == sorted(w1) == list(range(50))
    by_window0, by_window1 = dict(zip(w0, o0, strict=True)), dict(zip(w1, o1, strict=True))
    # ...cropped per window (not one offset per batch or per epoch)...
    assert len(set(o0)) > 25
    # ...and afresh each epoch: a window keeps its offset only by chance (1 in 201).
    same = sum(by_window0[w] == by_window1[w] for w in range(50))
    assert same <= 3, f"{same} of 50 windows kept their crop from one epoch to the next"


def test_training_crops_reach_every_offset_from_0_to_200():
    ws = encoded_windows(50)
    seen = np.concatenate(
        [draw_epoch(ws, np.random.default_rng([1, 3, 0, e]), batch_size=64)[1] for e in range(60)]
    )
    # 3,000 draws from 201 offsets: both ends come up (the window's last sample is reachable).
    assert seen.min() == 0 and seen.max() == STORED - CROP
    assert len(np.unique(seen)) > 190


def test_challenge1_windows_are_never_cropped():
    ws = encoded_windows(20, n_times=CROP)
    source = FoldSource(1, FoldSubjects((), (), ()), fit=ws, inner_val=ws)
    for x, y in source.train_batches(8, np.random.default_rng(0)):
        np.testing.assert_array_equal(x, ws.eeg[y.astype(np.int64)])
    np.testing.assert_array_equal(eval_arrays(ws), ws.eeg)


class _EncodedSource(FoldSource):
    """A fold whose windows are the encoded ones, whatever the store holds."""

    def __init__(self, store, challenge: int, subjects: FoldSubjects) -> None:
        super().__init__(
            challenge, subjects, fit=encoded_windows(40), inner_val=encoded_windows(6, first=40)
        )

    def load_test(self) -> WindowSet:
        return encoded_windows(6, first=46)


def test_train_func_feeds_the_model_a_fresh_crop_of_every_window_each_epoch(
    prepared_store, tmp_path, monkeypatch
):
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    cls = get_model_class("dense_attention")
    original = cls.loss

    def recording_loss(self, X, y):
        seen.append((X.detach().numpy().copy(), y.detach().numpy().copy()))
        return original(self, X, y)

    monkeypatch.setattr(cls, "loss", recording_loss)
    job = FoldJob(store=str(prepared_store), challenge=2, out_dir=str(tmp_path), n_folds=3)
    hp = TrainConfig(
        model="dense_attention",
        model_params={"d_model": 16, "n_heads": 2, "n_layers": 1},
        batch_size=16,
        max_epochs=2,
    )
    with using_fold_source(_EncodedSource), reporting_to(LocalReporter()):
        train_func(make_config(job, hp))
    assert len(seen) == 2 * 3  # 40 windows in batches of 16, two epochs
    eeg = encoded_windows(40).eeg
    epochs = []
    for batches in (seen[:3], seen[3:]):
        windows = np.concatenate([y.astype(np.int64) for _, y in batches])
        offsets = np.concatenate(
            [assert_exact_crops(x, y.astype(np.int64), eeg) for x, y in batches]
        )
        assert sorted(windows) == list(range(40))
        assert len(set(offsets)) > 20  # one draw per window, not per batch
        epochs.append(dict(zip(windows, offsets, strict=True)))
    same = sum(epochs[0][w] == epochs[1][w] for w in range(40))
    assert same <= 3, f"{same} of 40 windows kept their training crop into the next epoch"


# --- evaluation: the scorer's fixed crops, always the same --------------------------------


def independent_offsets(n: int) -> np.ndarray:
    return np.random.default_rng(42).integers(0, STORED - CROP + 1, size=n)


def test_evaluation_uses_one_fixed_crop_per_window_from_seed_42():
    ws = encoded_windows(57)
    crops = eval_arrays(ws)
    offsets = assert_exact_crops(crops, np.arange(57), ws.eeg)  # in window order
    np.testing.assert_array_equal(offsets, independent_offsets(57))
    np.testing.assert_array_equal(scorer_crops(57, STORED), independent_offsets(57))


def _concat(batches: Iterable[np.ndarray]) -> np.ndarray:
    return np.concatenate(list(batches))


def test_evaluation_crops_are_the_same_every_call_batch_size_and_epoch():
    ws = encoded_windows(57)
    first = eval_arrays(ws)
    # Offsets belong to windows, not to positions in a batch.
    for batch_size in (1, 7, 56, 4096):
        np.testing.assert_array_equal(_concat(eval_batches(ws, batch_size)), first)
    # Nothing an epoch of training or a global seed does moves them.
    for epoch in range(3):
        np.random.seed(epoch)
        torch.manual_seed(epoch)
        list(train_batches(ws, 16, np.random.default_rng([0, 3, 0, epoch]), crop=True))
        np.testing.assert_array_equal(eval_arrays(ws), first)


_CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, {root!r})
from tests.training.test_fold_data import decode, encoded_windows
from eegtune.training.fold_data import eval_arrays, scorer_crops
ws = encoded_windows(57)
windows, offsets = decode(eval_arrays(ws))
print(json.dumps({{"windows": windows.tolist(), "offsets": offsets.tolist(),
                  "scorer": scorer_crops(57, 400).tolist()}}))
"""


def test_evaluation_crops_are_the_same_in_a_fresh_process(tmp_path):
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=root)],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    child = json.loads(out.stdout.strip().splitlines()[-1])
    windows, offsets = decode(eval_arrays(encoded_windows(57)))
    assert child["windows"] == windows.tolist() == list(range(57))
    assert child["offsets"] == offsets.tolist() == independent_offsets(57).tolist()
    assert child["scorer"] == offsets.tolist()


# --- ridge_bandpower: fitted and scored on the same evaluation crops ----------------------


def stored_windows_in_canonical_order(store, subjects) -> tuple[np.ndarray, pd.DataFrame]:
    """The subjects' stored windows sorted by (subject, recording, window index)."""
    eeg, meta = read_windows(store, 2, subjects=sorted(subjects))
    meta = meta.reset_index(drop=True)
    order = meta.sort_values(["subject", "recording", "window_index"]).index.to_numpy()
    return eeg[order], meta.iloc[order].reset_index(drop=True)


def crop_at(eeg: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return np.stack([w[:, o : o + CROP] for w, o in zip(eeg, offsets, strict=True)])


@torch.inference_mode()
def model_predictions(model, x: np.ndarray) -> np.ndarray:
    return model(torch.from_numpy(np.ascontiguousarray(x))).numpy()[:, 0]


def test_ridge_bandpower_is_fitted_and_scored_on_the_scorer_crops(
    prepared_store, tmp_path, monkeypatch
):
    fitted: list[tuple[np.ndarray, np.ndarray]] = []
    original = RidgeBandpower.fit

    def recording_fit(self, X, y, *args, **kwargs):
        fitted.append((np.array(X, copy=True), np.array(y, copy=True)))
        return original(self, X, y, *args, **kwargs)

    monkeypatch.setattr(RidgeBandpower, "fit", recording_fit)
    job = FoldJob(store=str(prepared_store), challenge=2, out_dir=str(tmp_path), n_folds=3)
    with reporting_to(LocalReporter()):
        metrics = train_func(make_config(job, TrainConfig(model="ridge_bandpower")))
    subjects = metrics["subjects"]

    # The fit windows, cropped where the scorer's generator says, in canonical order.
    assert len(fitted) == 1
    X, y = fitted[0]
    eeg, meta = stored_windows_in_canonical_order(prepared_store, subjects["fit"])
    expected = crop_at(eeg, independent_offsets(len(eeg)))
    assert X.shape == expected.shape == (len(meta), N_CHANS, CROP)
    np.testing.assert_array_equal(X, expected)
    np.testing.assert_array_equal(y, meta["target"].to_numpy())

    model, _ = load_checkpoint(tmp_path / "fold0" / "checkpoint.pt")

    # Inner validation (early stopping's view) is scored on the same kind of crops...
    eeg_val, meta_val = stored_windows_in_canonical_order(prepared_store, subjects["inner_val"])
    val_pred = model_predictions(model, crop_at(eeg_val, independent_offsets(len(eeg_val))))
    assert metrics["inner_val_rmse"] == pytest.approx(rmse(meta_val["target"], val_pred), rel=1e-5)

    # ...and so are the out-of-fold predictions, row for row.
    oof = pd.read_parquet(tmp_path / "fold0" / "oof.parquet")
    eeg_test, meta_test = stored_windows_in_canonical_order(prepared_store, subjects["test"])
    keys = ["subject", "recording", "window_index"]
    pd.testing.assert_frame_equal(
        oof[keys].astype(str), meta_test[keys].astype(str), check_dtype=False
    )
    mine = model_predictions(model, crop_at(eeg_test, independent_offsets(len(eeg_test))))
    np.testing.assert_allclose(oof["prediction"], mine, rtol=1e-5, atol=1e-6)
    # The crop matters to ridge, so agreeing above is evidence, not a tautology.
    first_two_seconds = model_predictions(model, eeg_test[:, :, :CROP])
    assert not np.allclose(oof["prediction"], first_two_seconds, rtol=1e-5, atol=1e-6)

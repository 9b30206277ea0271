"""A fold interrupted mid-training resumes from its last epoch and ends exactly where an
uninterrupted run ends."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from eegtune.training.config import FoldJob, TrainConfig, make_config
from eegtune.training.reporting import LocalReporter, reporting_to
from eegtune.training.train_func import fold_subjects, train_func
from eegtune.training.training_state import STATE_FILE, fingerprint, load_state

# Dropout on, so the drill also proves torch's RNG is restored.
TCN = {"n_filters": 8, "n_blocks": 2, "dropout": 0.3}


class Interrupted(Exception):
    pass


class KilledAfter(LocalReporter):
    """Saves states like the real reporter, then dies after ``epochs`` epochs."""

    def __init__(self, epochs: int, state_path):
        super().__init__(state_path=state_path)
        self.epochs = epochs

    def report(self, metrics, checkpoint_dir=None, state=None):
        super().report(metrics, checkpoint_dir, state)
        if "train_loss" in metrics and len(self.history) >= self.epochs:
            raise Interrupted


def _config(store, out, max_epochs=4, patience=8):
    job = FoldJob(store=str(store), challenge=1, out_dir=str(out), fold=1, n_folds=3)
    hp = TrainConfig(
        model="softargmax_tcn", model_params=TCN, max_epochs=max_epochs, patience=patience
    )
    return job, hp, make_config(job, hp)


def _weights(out):
    return torch.load(out / "fold1" / "checkpoint.pt", weights_only=True)["state_dict"]


def test_resumed_fold_matches_an_uninterrupted_one(prepared_store, tmp_path):
    torch.set_num_threads(1)
    _, _, cfg = _config(prepared_store, tmp_path / "whole")
    whole = LocalReporter()
    with reporting_to(whole):
        train_func(cfg)

    job, hp, cfg = _config(prepared_store, tmp_path / "cut")
    state_path = tmp_path / "cut" / "fold1" / STATE_FILE
    with reporting_to(KilledAfter(2, state_path)), pytest.raises(Interrupted):
        train_func(cfg)
    saved = load_state(state_path, fingerprint(job, hp, fold_subjects(job, hp)))
    assert saved is not None and saved.epochs_done == 2 and not saved.stopped

    resumed = LocalReporter(state_path=state_path)
    with reporting_to(resumed):
        metrics = train_func(cfg)
    assert metrics["resumed_at_epoch"] == 2
    # Only the missing epochs ran, and they reproduce the uninterrupted run exactly.
    assert [m["epoch"] for m in resumed.history if "train_loss" in m] == [2, 3]
    assert [m["train_loss"] for m in resumed.history if "train_loss" in m] == [
        m["train_loss"] for m in whole.history if "train_loss" in m
    ][2:]
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "whole" / "fold1" / "oof.parquet"),
        pd.read_parquet(tmp_path / "cut" / "fold1" / "oof.parquet"),
    )


def test_finished_fold_is_not_trained_again(prepared_store, tmp_path):
    _, _, cfg = _config(prepared_store, tmp_path, max_epochs=2)
    state_path = tmp_path / "fold1" / STATE_FILE
    with reporting_to(LocalReporter(state_path=state_path)):
        first = train_func(cfg)
    again = LocalReporter(state_path=state_path)
    with reporting_to(again):
        second = train_func(cfg)
    assert second["resumed_at_epoch"] == 2
    assert not [m for m in again.history if "train_loss" in m]
    assert second["oof_rmse"] == first["oof_rmse"]


def test_state_of_another_configuration_is_ignored(prepared_store, tmp_path):
    _, _, cfg = _config(prepared_store, tmp_path, max_epochs=2)
    state_path = tmp_path / "fold1" / STATE_FILE
    with reporting_to(LocalReporter(state_path=state_path)):
        train_func(cfg)
    changed = LocalReporter(state_path=state_path)
    with reporting_to(changed):
        metrics = train_func({**cfg, "lr": 1e-3})
    assert metrics["resumed_at_epoch"] == 0
    assert [m["epoch"] for m in changed.history if "train_loss" in m] == [0, 1]


def test_damaged_state_is_named(prepared_store, tmp_path):
    _, _, cfg = _config(prepared_store, tmp_path, max_epochs=2)
    state_path = tmp_path / "fold1" / STATE_FILE
    state_path.parent.mkdir(parents=True)
    state_path.write_bytes(b"not a torch file")
    with reporting_to(LocalReporter(state_path=state_path)), pytest.raises(ValueError) as err:
        train_func(cfg)
    assert str(state_path) in str(err.value)


def test_state_from_before_the_store_was_prepared_again_is_ignored(
    prepared_store, tmp_path, copy_tree
):
    store = copy_tree(prepared_store, "store")
    _, _, cfg = _config(store, tmp_path / "run", max_epochs=2)
    state_path = tmp_path / "run" / "fold1" / STATE_FILE
    with reporting_to(LocalReporter(state_path=state_path)):
        train_func(cfg)
    manifest = store / "manifest.json"
    manifest.write_text(manifest.read_text().replace("{", '{"prepared_again": true, ', 1))
    again = LocalReporter(state_path=state_path)
    with reporting_to(again):
        metrics = train_func(cfg)
    assert metrics["resumed_at_epoch"] == 0


def test_fingerprint_follows_the_optimiser_recipe(prepared_store, tmp_path):
    def key(**settings):
        job = FoldJob(store=str(prepared_store), challenge=1, out_dir=str(tmp_path), n_folds=3)
        hp = TrainConfig(model="sparse_attention", **settings)
        return fingerprint(job, hp, fold_subjects(job, hp))

    ones = {"front_end": 1.0, "attention": 1.0, "head": 1.0}
    assert key() == key(lr_mult=ones)  # the same training, so the same saved state
    assert key(decay_norms_and_biases=True) == key(decay_norms_and_biases=True, lr_mult=ones)
    others = [
        key(decay_norms_and_biases=True),
        key(lr_mult={"head": 2.0}),
        key(lr_mult={"head": 0.0}),
        key(warmup_epochs=1.0),
    ]
    assert len({key(), *others}) == 5


def test_a_refits_fingerprint_follows_its_length(prepared_store, tmp_path):
    def key(refit_epochs: int) -> str:
        job = FoldJob(
            store=str(prepared_store),
            challenge=1,
            out_dir=str(tmp_path),
            n_folds=3,
            refit_epochs=refit_epochs,
        )
        hp = TrainConfig(model="softargmax_tcn")
        return fingerprint(job, hp, fold_subjects(job, hp))

    # A refit chosen longer (its folds retrained) must not resume the shorter one's state.
    assert len({key(0), key(3), key(5)}) == 3

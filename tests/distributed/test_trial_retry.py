"""The retry drill: kill a trial's driver (not a worker); Ray Tune runs the trial again.
The trial's folds train on the pool's workers, not in its driver, so they go on untouched;
the new driver picks them up and the trial completes with nothing trained twice."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import optuna
import pandas as pd
import pytest

from eegtune.distributed.experiment import DRIVER
from eegtune.training.folds import store_subjects
from tests.distributed.drills import saved_epochs, start, trial_states, tune_command, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.ray]

MAX_EPOCHS = 30  # with patience above it, the trial is still training when its driver dies


def _checkpointed_driver(runs: Path) -> tuple[Path, dict, int] | None:
    """A trial's driver, once its first fold has saved a training state."""
    for trial_dir in sorted((runs / "retry" / "folds").glob("*")):
        epochs = saved_epochs(trial_dir / "fold0")
        if (trial_dir / DRIVER).exists() and epochs:
            return trial_dir, json.loads((trial_dir / DRIVER).read_text()), epochs
    return None


@pytest.mark.timeout(600)
def test_trial_whose_driver_dies_is_retried_and_its_folds_go_on(prepared_store, tmp_path):
    runs, log = tmp_path / "runs", tmp_path / "tune.log"
    options = ("--trials", "1", "--max-epochs", str(MAX_EPOCHS), "--set", "patience=1000",
               "--max-failures", "1")  # fmt: skip
    proc = start(tune_command(prepared_store, runs, "retry", *options), log)
    try:
        trial_dir, driver, epoch = wait_for(
            lambda: _checkpointed_driver(runs), proc, log, 300, "registered checkpoint"
        )
        assert epoch < MAX_EPOCHS
        workers = [
            json.loads((trial_dir / f"fold{k}" / "placement_0.json").read_text()) for k in (0, 1)
        ]
        os.kill(driver["pid"], signal.SIGKILL)  # the process driving the trial
        assert proc.wait(timeout=480) == 0, log.read_text()
    finally:
        proc.kill()
    assert trial_states(runs, "retry") == [optuna.trial.TrialState.COMPLETE]

    # A new driver ran the trial again...
    assert json.loads((trial_dir / DRIVER).read_text())["pid"] != driver["pid"]
    for k in (0, 1):
        now = json.loads((trial_dir / f"fold{k}" / "placement_0.json").read_text())
        # ...while its folds trained on in the workers they had, from where they were: the
        # driver's death cost them nothing.
        assert now["pid"] == workers[k]["pid"]
        metrics = json.loads((trial_dir / f"fold{k}" / "metrics.json").read_text())
        assert metrics["resumed_at_epoch"] == 0, metrics
        assert metrics["best_epoch"] >= 0
    oof = pd.concat(pd.read_parquet(f) for f in sorted(trial_dir.glob("fold*/oof.parquet")))
    per_subject = oof.groupby("subject")["fold"].nunique()
    assert set(per_subject.index) == set(store_subjects(prepared_store, 1)["subject"])
    assert (per_subject == 1).all()

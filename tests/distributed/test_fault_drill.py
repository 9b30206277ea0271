"""The fault drill: kill a fold worker of the pool mid-fold; Ray restarts it, the fold
resumes from its last saved state, the fold beside it never notices, and the search
completes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import optuna
import pandas as pd
import pytest

from eegtune.training.folds import store_subjects
from tests.distributed.drills import saved_epochs, start, trial_states, tune_command, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.ray]

# Patience above max_epochs: no fold stops early, so however late the machine registers
# the first checkpoint, the trial still has epochs left to train when the worker dies.
MAX_EPOCHS = 30


def _checkpointed_worker(runs: Path) -> tuple[Path, dict, int] | None:
    """A trial's fold-1 worker, as soon as that fold has saved a training state."""
    for trial_dir in sorted((runs / "drill" / "folds").glob("*")):
        placement = trial_dir / "fold1" / "placement_0.json"
        epochs = saved_epochs(trial_dir / "fold1")
        if placement.exists() and epochs:
            return trial_dir, json.loads(placement.read_text()), epochs
    return None


@pytest.mark.timeout(600)
def test_killed_worker_resumes_from_checkpoint_and_search_completes(prepared_store, tmp_path):
    runs, log = tmp_path / "runs", tmp_path / "tune.log"
    options = ("--trials", "2", "--max-epochs", str(MAX_EPOCHS), "--set", "patience=1000")
    proc = start(tune_command(prepared_store, runs, "drill", *options), log)
    try:
        trial_dir, killed, epoch = wait_for(
            lambda: _checkpointed_worker(runs), proc, log, 300, "registered checkpoint"
        )
        assert epoch < MAX_EPOCHS
        os.kill(killed["pid"], signal.SIGKILL)  # a training worker dies mid-trial
        assert proc.wait(timeout=480) == 0, log.read_text()
    finally:
        proc.kill()
    assert trial_states(runs, "drill") == [optuna.trial.TrialState.COMPLETE] * 2

    # The killed fold went on in a restarted (or another) worker, which took it up where
    # its saved state left it instead of starting over...
    after = json.loads((trial_dir / "fold1" / "placement_0.json").read_text())
    assert after["pid"] != killed["pid"]
    metrics = json.loads((trial_dir / "fold1" / "metrics.json").read_text())
    assert epoch <= metrics["resumed_at_epoch"] < MAX_EPOCHS, metrics
    assert metrics["best_epoch"] >= 0
    # ...while the fold beside it trained on in its own worker, never interrupted.
    assert json.loads((trial_dir / "fold0" / "metrics.json").read_text())["resumed_at_epoch"] == 0
    # ...and its out-of-fold predictions still cover every subject exactly once.
    oof = pd.concat(pd.read_parquet(f) for f in sorted(trial_dir.glob("fold*/oof.parquet")))
    per_subject = oof.groupby("subject")["fold"].nunique()
    assert set(per_subject.index) == set(store_subjects(prepared_store, 1)["subject"])
    assert (per_subject == 1).all()

"""The fault drill: kill a training worker mid-trial; the trial resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from eegtune.distributed.tune import JOURNAL, TuneJob, _study
from eegtune.training.folds import store_subjects

pytestmark = [pytest.mark.slow, pytest.mark.ray]

# Epochs take ~0.2-0.6 s here: enough of them that the trial is still training after
# Ray has registered a checkpoint (registration waits for the controller's next poll).
MAX_EPOCHS = 40
SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of registered checkpoints


def _worker_of_checkpointed_trial(runs: Path) -> tuple[Path, dict] | None:
    """A running trial's fold-1 worker, once Ray has registered a checkpoint of the trial
    (registration trails the upload by a controller poll) with many epochs still to go."""
    for trial_dir in sorted((runs / "drill" / "folds").glob("*")):
        placement = trial_dir / "fold1" / "placement_0.json"
        snapshot = runs / "drill" / "train" / f"train_{trial_dir.name}" / SNAPSHOT
        if not (placement.exists() and snapshot.exists()):
            continue
        try:
            registered = json.loads(snapshot.read_text())["checkpoint_results"]
        except json.JSONDecodeError:  # caught mid-write
            continue
        if registered and registered[-1]["metrics"]["epoch"] <= MAX_EPOCHS // 2:
            return trial_dir, json.loads(placement.read_text())
    return None


def test_killed_worker_resumes_from_checkpoint_and_search_completes(prepared_store, tmp_path):
    runs = tmp_path / "runs"
    args = [
        sys.executable, "-m", "eegtune.cli", "tune",
        "--store", str(prepared_store), "--challenge", "1", "--space", "softargmax_tcn",
        "--trials", "2", "--folds", "2", "--max-epochs", str(MAX_EPOCHS), "--name", "drill",
        "--storage-path", str(runs), "--num-cpus", "2", "--quiet",
        # No ASHA: the killed trial must run to its end for its outputs to be checked.
        "--scheduler", "fifo",
    ]  # fmt: skip
    log = tmp_path / "tune.log"  # a file, not a pipe nobody reads while the test polls
    proc = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    found = None
    while found is None:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "no trial checkpointed in time"
        found = _worker_of_checkpointed_trial(runs)
        time.sleep(0.1)
    trial_dir, killed = found
    os.kill(killed["pid"], signal.SIGKILL)  # a training worker dies mid-trial

    assert proc.wait(timeout=600) == 0, log.read_text()
    study = optuna.load_study(
        study_name="drill",
        storage=_study(TuneJob("", 1, "", 2, 2, "drill", str(runs))),
    )
    assert (runs / "drill" / JOURNAL).exists()
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2

    # The killed trial went on in new workers, which took up both folds where the
    # checkpoint left them instead of starting over.
    after = json.loads((trial_dir / "fold1" / "placement_0.json").read_text())
    assert after["pid"] != killed["pid"]
    for k in (0, 1):
        metrics = json.loads((trial_dir / f"fold{k}" / "metrics.json").read_text())
        assert 1 <= metrics["resumed_at_epoch"] < MAX_EPOCHS, metrics
    # ...and its out-of-fold predictions still cover every subject exactly once.
    oof = pd.concat(pd.read_parquet(f) for f in sorted(trial_dir.glob("fold*/oof.parquet")))
    per_subject = oof.groupby("subject")["fold"].nunique()
    assert set(per_subject.index) == set(store_subjects(prepared_store, 1)["subject"])
    assert (per_subject == 1).all()

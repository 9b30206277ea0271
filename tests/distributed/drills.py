"""What the fault drills share: the `eegtune tune` command they run and interrupt, and
how they read which epochs a fold of the pool has saved."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import optuna

from eegtune.distributed.experiment import JOURNAL, Experiment
from eegtune.distributed.study import load_study
from eegtune.training.training_state import STATE_FILE

T = TypeVar("T")


def tune_command(store: Path, runs: Path, name: str, *options: str) -> list[str]:
    """`eegtune tune` on Challenge 1, 2 folds, a local 2-CPU Ray, no early stopping (each
    drill checks the outputs of every trial, so ASHA must not end one early), and every
    fold's state saved after each epoch, so a drill need not wait 30 s for one."""
    return [
        sys.executable, "-m", "eegtune.cli", "tune",
        "--store", str(store), "--challenge", "1", "--space", "softargmax_tcn",
        "--folds", "2", "--name", name, "--storage-path", str(runs), "--num-cpus", "2",
        "--quiet", "--scheduler", "fifo", "--checkpoint-every", "0", *options,
    ]  # fmt: skip


def start(args: list[str], log: Path) -> subprocess.Popen:
    """Run the command with its output in a file: a pipe nobody reads would fill and stall it."""
    return subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


def wait_for(
    found: Callable[[], T | None], proc: subprocess.Popen, log: Path, seconds: float, what: str
) -> T:
    """Poll ``found`` until it returns something; fail clearly if the run ends or stalls."""
    deadline = time.monotonic() + seconds
    while True:
        result = found()
        if result is not None:
            return result
        assert proc.poll() is None, f"the run ended before {what}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {what} within {seconds} s:\n{log.read_text()}"
        time.sleep(0.1)


def saved_epochs(fold_dir: Path) -> int | None:
    """Epochs done in a pool fold's saved training state, None before its first save."""
    import torch

    state = fold_dir / STATE_FILE
    if not state.exists():
        return None
    try:
        return int(torch.load(state, weights_only=True)["epochs_done"])
    except Exception:  # caught mid-rename on a slow disk: ask again
        return None


def trials(runs: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    """The experiment's Optuna trials so far, from its journal (none before it exists)."""
    if not (runs / name / JOURNAL).exists():
        return []
    study = load_study(Experiment(str(runs / name), runs / name, {"n_folds": 2}))
    return study.trials if study is not None else []


def trial_states(runs: Path, name: str) -> list[optuna.trial.TrialState]:
    return [t.state for t in trials(runs, name)]

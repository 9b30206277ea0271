"""A small finished `eegtune tune` experiment, shared by the ensemble tests (read-only:
a test that damages one works on a copy)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def finished_experiment(prepared_store, tmp_path_factory) -> Path:
    """Three FIFO trials (so all three finish) of 2 folds × 1 epoch on Challenge 1."""
    runs = tmp_path_factory.mktemp("ens_runs")
    cmd = [
        sys.executable, "-m", "eegtune.cli", "tune",
        "--store", str(prepared_store), "--challenge", "1", "--space", "softargmax_tcn",
        "--trials", "3", "--folds", "2", "--max-epochs", "1", "--scheduler", "fifo",
        "--name", "c1", "--storage-path", str(runs), "--num-cpus", "2", "--quiet",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    return runs / "c1"

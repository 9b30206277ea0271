"""The resume drill: interrupt `eegtune tune` after a finished trial, then --resume it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from eegtune.distributed.tune import JOURNAL, TuneJob, _study

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _complete(job: TuneJob) -> list[optuna.trial.FrozenTrial]:
    if not (job.experiment_dir / JOURNAL).exists():
        return []
    try:
        study = optuna.load_study(study_name=job.name, storage=_study(job))
    except KeyError:
        return []
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def test_interrupted_search_resumes_without_rerunning_finished_trials(prepared_store, tmp_path):
    runs = tmp_path / "runs"
    args = [
        sys.executable,
        "-m",
        "eegtune.cli",
        "tune",
        "--store",
        str(prepared_store),
        "--challenge",
        "1",
        "--space",
        "softargmax_tcn",
        "--trials",
        "3",
        "--folds",
        "2",
        "--max-epochs",
        "1",
        "--name",
        "drill",
        "--storage-path",
        str(runs),
        "--num-cpus",
        "2",
        "--quiet",
        # No ASHA: every trial must write its predictions for the last check below.
        "--scheduler",
        "fifo",
    ]
    job = TuneJob(
        store="", challenge=1, space="", n_trials=3, n_folds=2, name="drill", storage_path=str(runs)
    )
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 480
    while not _complete(job):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(2)
    proc.send_signal(signal.SIGINT)  # the user's Ctrl-C, after at least one finished trial
    proc.wait(timeout=180)
    finished = {t.number: t.params for t in _complete(job)}
    assert 1 <= len(finished) < 3
    oof_files = sorted((runs / "drill" / "folds").glob("*/fold0/oof.parquet"))
    stamps = {f: f.stat().st_mtime_ns for f in oof_files}

    out = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    complete = _complete(job)
    assert len(complete) == 3
    # The trials finished before the interruption kept their numbers and results...
    assert all(finished[t.number] == t.params for t in complete if t.number in finished)
    # ...and were not trained again.
    assert all(f.stat().st_mtime_ns == stamps[f] for f in oof_files)
    assert len(list((runs / "drill" / "folds").glob("*/fold0/oof.parquet"))) >= 3
    assert Path(runs / "drill" / "tune_job.json").exists()

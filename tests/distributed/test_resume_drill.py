"""The resume drill: interrupt `eegtune tune` after a finished trial, then --resume it."""

from __future__ import annotations

import signal
import subprocess

import optuna
import pytest

from tests.distributed.drills import start, trial_states, trials, tune_command, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.ray]
COMPLETE = optuna.trial.TrialState.COMPLETE


@pytest.mark.timeout(900)
def test_interrupted_search_resumes_without_rerunning_finished_trials(prepared_store, tmp_path):
    runs, log = tmp_path / "runs", tmp_path / "tune.log"
    args = tune_command(prepared_store, runs, "drill", "--trials", "3", "--max-epochs", "1")
    proc = start(args, log)
    try:
        wait_for(
            lambda: True if COMPLETE in trial_states(runs, "drill") else None,
            proc, log, 480, "finished trial",
        )  # fmt: skip
        proc.send_signal(signal.SIGINT)  # the user's Ctrl-C, after at least one finished trial
        proc.wait(timeout=180)
    finally:
        proc.kill()

    def complete() -> dict[int, dict]:
        return {t.number: t.params for t in trials(runs, "drill") if t.state == COMPLETE}

    finished = complete()
    assert 1 <= len(finished) < 3
    oof_files = sorted((runs / "drill" / "folds").glob("*/fold0/oof.parquet"))
    stamps = {f: f.stat().st_mtime_ns for f in oof_files}

    out = subprocess.run(
        [*args, "--resume"], stdout=(tmp_path / "resume.log").open("w"),
        stderr=subprocess.STDOUT, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, (tmp_path / "resume.log").read_text()
    after = complete()
    assert len(after) == 3
    # The trials finished before the interruption kept their numbers and results...
    assert all(after[n] == params for n, params in finished.items())
    # ...and were not trained again.
    assert all(f.stat().st_mtime_ns == stamps[f] for f in oof_files)
    assert len(list((runs / "drill" / "folds").glob("*/fold0/oof.parquet"))) >= 3
    assert (runs / "drill" / "tune_job.json").exists()

"""The experiment's durable study: interrupted trials closed, and the results table read
from the study and each trial's saved out-of-fold figures."""

from __future__ import annotations

import json
import math

import optuna
import pandas as pd

from eegtune.distributed.experiment import JOURNAL, TuneJob
from eegtune.distributed.fold_race import Verdict, write_verdict
from eegtune.distributed.study import (
    TRIAL_ID_ATTR,
    close_interrupted,
    finished_trials,
    fold_epochs_spent,
    points_not_tried,
    results_table,
    study_storage,
)
from eegtune.training.run_files import OOF, OOF_SCORES


def _exp(tmp_path):
    job = TuneJob("s", 1, "softargmax_tcn", 1, 2, "x", str(tmp_path))
    job.experiment_dir.mkdir(parents=True)
    return job.experiment()


def test_interrupted_trials_are_closed_before_resuming(tmp_path):
    exp = _exp(tmp_path)
    study = optuna.create_study(study_name="x", storage=study_storage(exp))
    study.ask()  # a trial the killed driver never finished
    done = study.ask()
    study.tell(done, 0.9)
    close_interrupted(exp)
    states = [t.state for t in optuna.load_study(study_name="x", storage=study_storage(exp)).trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert (exp.path / JOURNAL).exists() and finished_trials(exp) == 1


def test_results_table_reads_each_trials_saved_scores_and_marks_stopped_trials(tmp_path):
    exp = _exp(tmp_path)
    study = optuna.create_study(study_name="x", storage=study_storage(exp))
    for trial_id, value in (("stopped1", 1.05), ("done1", 0.8)):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        trial.set_user_attr(TRIAL_ID_ATTR, trial_id)
        study.tell(trial, value)
    run = exp.path / "folds" / "done1"
    for k in (0, 1):
        (run / f"fold{k}").mkdir(parents=True)
        frame = pd.DataFrame({"target": [0.0, 1.0], "prediction": [0.5, 0.5], "fold": k})
        frame.to_parquet(run / f"fold{k}" / OOF)
    # Scored once when the trial ended; the table reads that, not the Parquet files.
    scores = {"oof_nrmse": 0.77, "fold_oof_nrmse": [0.7, 0.8], "n_rows": 4, "n_folds": 2}
    (run / OOF_SCORES).write_text(json.dumps(scores))
    table = results_table(exp)
    assert list(table["status"]) == ["COMPLETE", "STOPPED"]  # best val first
    assert table.loc[0, "oof_nrmse"] == 0.77 and table.loc[0, "fold_oof_nrmse"] == [0.7, 0.8]
    # ASHA stopped it: Optuna holds its last value, no folds exist.
    assert table.loc[1, "val_nrmse"] == 1.05 and pd.isna(table.loc[1, "oof_nrmse"])
    assert table.loc[1, "trial_dir"] == str(exp.path / "folds" / "stopped1")
    assert table.loc[1, "stopped_by"] == "asha" and table.loc[0, "stopped_by"] == ""


def test_results_table_says_why_racing_stopped_a_trial(tmp_path):
    exp = _exp(tmp_path)
    study = optuna.create_study(study_name="x", storage=study_storage(exp))
    trial = study.ask()
    trial.set_user_attr(TRIAL_ID_ATTR, "raced")
    study.tell(trial, 1.2)
    verdict = Verdict("raced", 3, (0, 1), "leader7", math.log(1.25), 0.01, True, 1.2)
    (exp.path / "folds" / "raced").mkdir(parents=True)
    write_verdict(str(exp.path / "folds" / "raced"), verdict)
    row = results_table(exp).iloc[0]
    assert row["status"] == "STOPPED"
    assert row["stopped_by"] == (
        "race (epoch 3: +25.0% error against leader7 on folds [0, 1] (paired t, one-sided p 0.01))"
    )


def test_fold_epochs_spent_is_the_pools_count_from_every_runs_reports(tmp_path):
    exp = _exp(tmp_path)

    def reports(run: str, trial: str, *lines: dict | str) -> None:
        folder = exp.path / "ray" / run / f"trial_{trial}"
        folder.mkdir(parents=True)
        text = [line if isinstance(line, str) else json.dumps(line) for line in lines]
        (folder / "result.json").write_text("\n".join(text) + "\n")

    # Epoch reports, then the final one with the same count.
    reports("tune_0", "a", {"trial_id": "a", "fold_epochs": 2}, {"trial_id": "a", "fold_epochs": 6},
            {"trial_id": "a", "fold_epochs": 6, "oof_nrmse": 0.8})  # fmt: skip
    # Raced on its first two folds: 3 fold-epochs, fewer than epochs × folds.
    reports("tune_0", "b", {"trial_id": "b", "fold_epochs": 3, "stopped_by": "race"})
    # A data-parallel trial carries no count; a line cut short by an interrupt is skipped.
    reports("tune_0", "c", {"trial_id": "c", "epoch": 0}, '{"trial_id": "c", "fold_ep')
    reports("tune_1", "d", {"trial_id": "d", "fold_epochs": 7}, '{"trial_id": "d", "fold_ep')
    assert fold_epochs_spent(exp) == {"a": 6, "b": 3, "d": 7}


def test_a_point_is_tried_once_over_resumes_unless_its_trial_failed(tmp_path):
    exp = _exp(tmp_path)
    study = optuna.create_study(study_name="x", storage=study_storage(exp))
    a, b, c = {"lr": 1e-3}, {"lr": 2e-3}, {"lr": 3e-3}
    assert points_not_tried(exp, [a, b, c]) == [a, b, c]

    def run(point, state):
        study.enqueue_trial(point)
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        value = 0.9 if state == optuna.trial.TrialState.COMPLETE else None
        study.tell(trial, value, state=state)

    run(a, optuna.trial.TrialState.COMPLETE)
    run(c, optuna.trial.TrialState.FAIL)  # its only trial failed (interrupted): again
    study.enqueue_trial(b)  # waits in the journal, queued by an interrupted run
    assert points_not_tried(exp, [a, b, c]) == [c]

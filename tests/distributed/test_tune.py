"""A real (small) search on a local 2-CPU Ray: Tune + Optuna TPE + ASHA + the fold pool."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eegtune.distributed.fold_race import race_rungs
from eegtune.distributed.resources import plan_resources
from eegtune.distributed.study import TRIAL_ID_ATTR, load_study
from eegtune.distributed.tune import TuneJob, run_tune
from eegtune.errors import ExperimentError
from eegtune.search_spaces import default_point
from eegtune.training.folds import store_subjects

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _job(
    storage, store="s", n_trials=2, name="x", space="softargmax_tcn", n_folds=2, **settings
) -> TuneJob:
    """An experiment (2 folds and softargmax_tcn unless told) on Challenge 1 under ``storage``."""
    return TuneJob(
        store=store,
        challenge=1,
        space=space,
        n_trials=n_trials,
        n_folds=n_folds,
        name=name,
        storage_path=str(storage),
        **settings,
    )


@pytest.mark.timeout(360)
def test_small_tune_completes_then_resumes_without_rerunning(prepared_store, tmp_path, local_ray):
    job = _job(
        tmp_path,
        store=str(prepared_store),
        n_trials=1,
        name="t",
        max_epochs=2,
        seed=0,
        start_at_defaults=True,
    )
    plan = plan_resources(2, n_folds=2, pool=True)
    first = run_tune(job, plan, verbose=0)
    assert len(first) == 1 and first.loc[0, "status"] == "COMPLETE"
    # The first trial trained the architecture at its defaults.
    assert load_study(job.experiment()).trials[0].params == default_point(job.space)
    first_dir = Path(first.loc[0, "trial_dir"])
    first_mtime = (first_dir / "fold0" / "oof.parquet").stat().st_mtime_ns

    with pytest.raises(ExperimentError, match="--resume"):
        run_tune(job, plan, verbose=0)

    table = run_tune(TuneJob(**{**job.__dict__, "n_trials": 2}), plan, resume=True, verbose=0)
    assert sorted(table["trial"]) == [0, 1] and (table["status"] == "COMPLETE").all()
    assert np.isfinite(table["val_nrmse"]).all() and table["oof_nrmse"].notna().all()
    # The finished trial was not run again.
    assert (first_dir / "fold0" / "oof.parquet").stat().st_mtime_ns == first_mtime

    # Each trial's row points at its own folds, through the Tune trial id in the study.
    study = load_study(job.experiment())
    # The resumed search did not start at the defaults again: the sampler drew trial 1.
    assert study.trials[1].params != study.trials[0].params
    recorded = {t.number: t.user_attrs[TRIAL_ID_ATTR] for t in study.trials}
    assert len(set(recorded.values())) == 2
    for _, row in table.iterrows():
        assert Path(row["trial_dir"]) == job.experiment_dir / "folds" / recorded[row["trial"]]
    subjects = set(store_subjects(prepared_store, 1)["subject"])
    for trial_dir in table["trial_dir"]:
        oof = pd.concat(
            pd.read_parquet(f) for f in sorted(Path(trial_dir).glob("fold*/oof.parquet"))
        )
        # Every subject predicted, each by exactly one fold.
        assert set(oof["subject"]) == subjects
        assert oof.groupby("subject")["fold"].nunique().eq(1).all()
        assert sorted(oof["fold"].unique()) == [0, 1]


def _epochs_reported(job: TuneJob) -> dict[float, float]:
    """Each Tune trial's last reported epoch, by its learning rate, from Tune's own log of
    every result it received (one JSON line per report in each trial's result.json)."""
    last = {}
    for log in (job.experiment_dir / "ray").glob("tune_*/*/result.json"):
        results = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        last[float(results[0]["config"]["lr"])] = max(float(r["epoch"]) for r in results)
    return last


@pytest.mark.timeout(360)
@pytest.mark.filterwarnings("ignore:Fixed parameter lr with value 30.0 is out of range")
def test_asha_stops_a_trial_that_cannot_learn(prepared_store, tmp_path, local_ray):
    job = _job(
        tmp_path, store=str(prepared_store), name="asha", max_epochs=4, grace_period=1, seed=0
    )
    good = {"lr": 3e-3, "model.loss": "mse", "model.n_filters": 16, "model.n_blocks": 2}
    # A step size of 30 throws the soft-argmax to the window's edges: it cannot learn.
    bad = {**good, "lr": 30.0}
    # One trial at a time, so that the good one has reached the rung when the bad one does
    # (two at once would race for the pool's workers, and the first at a rung passes it).
    plan = plan_resources(2, n_folds=2, max_concurrent_trials=1, pool=True)
    table = run_tune(job, plan, verbose=0, points_to_evaluate=[good, bad])
    rows = table.set_index("lr")
    assert rows.loc[good["lr"], "status"] == "COMPLETE"
    assert np.isfinite(rows.loc[good["lr"], "oof_nrmse"])
    # The second trial met the first one's result at the first rung (grace 1) and lost.
    assert rows.loc[bad["lr"], "val_nrmse"] > rows.loc[good["lr"], "val_nrmse"]
    assert rows.loc[bad["lr"], "status"] == "STOPPED"
    assert pd.isna(rows.loc[bad["lr"], "oof_nrmse"])
    assert not list(Path(rows.loc[bad["lr"], "trial_dir"]).glob("fold*/oof.parquet"))
    # Tune's own record: the good trial reported through its final report (max_epochs + 1),
    # the bad one stopped well before its last epoch.
    epochs = _epochs_reported(job)
    assert epochs[good["lr"]] == job.max_epochs + 1
    assert epochs[bad["lr"]] < job.max_epochs


@pytest.mark.timeout(360)
@pytest.mark.filterwarnings("ignore:Fixed parameter lr with value 30.0 is out of range")
def test_race_stops_a_losing_trial_before_its_later_folds_start(
    prepared_store, tmp_path, local_ray
):
    job = _job(
        tmp_path,
        store=str(prepared_store),
        n_trials=1,
        name="race",
        n_folds=3,
        # Epochs here take a fraction of a second: enough of them, and no stop on patience,
        # that a trial's first fold cannot end (freeing a worker for its third) before its
        # second has reported its first epoch.
        max_epochs=30,
        fixed={"patience": 30},
        grace_period=1,
        seed=0,
        scheduler="race",
        # Two folds are all the bad trial gets before its third would start: at 0.5 two
        # folds each worse by more than the 1% margin are enough.
        race_confidence=0.5,
    )
    good = {"lr": 3e-3, "model.loss": "mse", "model.n_filters": 16, "model.n_blocks": 2}
    bad = {**good, "lr": 30.0}
    # Three folds on two workers, one trial at a time: a trial's third fold waits in the
    # pool's queue until one of its first two ends.
    plan = plan_resources(2, n_folds=3, max_concurrent_trials=1, pool=True)
    run_tune(job, plan, verbose=0, points_to_evaluate=[good])
    # The bad trial comes in a resumed run: it can only lose to the good one if the race
    # board kept the first run's posts.
    job = dataclasses.replace(job, n_trials=2)
    table = run_tune(job, plan, verbose=0, resume=True, points_to_evaluate=[bad])
    rows = table.set_index("lr")
    assert rows.loc[good["lr"], "status"] == "COMPLETE" and not rows.loc[good["lr"], "stopped_by"]
    bad_dir = Path(rows.loc[bad["lr"], "trial_dir"])
    verdict = json.loads((bad_dir / "race.json").read_text())
    assert rows.loc[bad["lr"], "status"] == "STOPPED"
    assert rows.loc[bad["lr"], "stopped_by"] == f"race ({verdict['reason']})"
    assert verdict["stop"] and verdict["folds"] == [0, 1]
    assert verdict["rung"] in race_rungs(job.grace_period, job.max_epochs)
    assert verdict["leader"] == Path(rows.loc[good["lr"], "trial_dir"]).name
    # The searcher was told the board's estimate for all folds, not the two folds' figure.
    assert rows.loc[bad["lr"], "val_nrmse"] == pytest.approx(verdict["estimate"])
    # The third fold never started; the first two stopped after an epoch or two.
    assert not (bad_dir / "fold2").exists()
    assert not list(bad_dir.glob("fold*/oof.parquet"))
    last = _last_reports(job)
    assert last[bad["lr"]]["stopped_by"] == "race"
    assert last[bad["lr"]]["epoch"] == verdict["rung"]  # ASHA files its estimate there
    assert last[bad["lr"]]["fold_epochs"] < 2 * job.max_epochs
    assert last[good["lr"]]["fold_epochs"] == 3 * job.max_epochs  # no patience stop


def _last_reports(job: TuneJob) -> dict[float, dict]:
    last = {}
    for log in (job.experiment_dir / "ray").glob("tune_*/*/result.json"):
        results = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        last[float(results[0]["config"]["lr"])] = results[-1]
    return last

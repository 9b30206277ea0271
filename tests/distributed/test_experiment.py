"""An experiment's settings and record: what is refused before Ray starts, what a
``--resume`` may not change, and reading an experiment back from its folder."""

from __future__ import annotations

import json

import pytest

from eegtune.distributed.experiment import (
    JOB_RECORD,
    JOURNAL,
    SPLIT_FILE,
    Experiment,
    TuneJob,
    check_resume,
    experiment_file,
)
from eegtune.distributed.resources import plan_resources
from eegtune.distributed.tune import run_tune
from eegtune.errors import ConfigError, EegtuneError, ExperimentError
from eegtune.search_spaces import get_space


def _job(storage, store="s", space="softargmax_tcn", **settings) -> TuneJob:
    return TuneJob(
        store=store, challenge=1, space=space, n_trials=2, n_folds=2, name="x",
        storage_path=str(storage), **settings,
    )  # fmt: skip


def test_unknown_sampler_scheduler_or_space_is_refused_when_the_job_is_made():
    with pytest.raises(ConfigError, match="sampler"):
        TuneJob("s", 1, "softargmax_tcn", 1, 2, "x", "/tmp", sampler="grid")
    with pytest.raises(ConfigError, match="scheduler"):
        TuneJob("s", 1, "softargmax_tcn", 1, 2, "x", "/tmp", scheduler="hyperband")
    for confidence in (0.3, 1.0):
        with pytest.raises(ConfigError, match="race confidence"):
            TuneJob("s", 1, "softargmax_tcn", 1, 2, "x", "/tmp", race_confidence=confidence)
    with pytest.raises(ConfigError, match="race keep"):
        TuneJob("s", 1, "softargmax_tcn", 1, 2, "x", "/tmp", race_keep=-0.1)
    # A typo in --space is caught here, before any cluster is started.
    with pytest.raises(EegtuneError, match="softargmax_tnc"):
        TuneJob("s", 1, "softargmax_tnc", 1, 2, "x", "/tmp")
    # The zoo searches the architecture: it has no one set of defaults to start from.
    with pytest.raises(ConfigError, match="searches the architecture"):
        TuneJob("s", 1, "zoo", 1, 2, "x", "/tmp", start_at_defaults=True)


def test_set_may_not_fix_what_the_space_searches_or_a_flag_sets(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot fix \['lr'\]"):
        _job(tmp_path, fixed={"lr": 1e-3})
    with pytest.raises(ConfigError, match=r"cannot fix \['seed'\]"):
        _job(tmp_path, fixed={"seed": 3})
    with pytest.raises(ConfigError, match="unknown setting"):
        _job(tmp_path, fixed={"patiense": 3})
    assert _job(tmp_path, fixed={"patience": 3}).fixed == {"patience": 3}


def test_resume_refuses_changed_settings_and_accepts_resumable_ones(tmp_path):
    job = _job(tmp_path)
    saved = job.record()
    check_resume(_job(tmp_path, data_mode="stream", checkpoint_every=5.0), saved)
    with pytest.raises(ExperimentError, match="n_folds: 3 -> 2"):
        check_resume(job, {**saved, "n_folds": 3})
    # A setting added since the experiment was saved counts as its default.
    check_resume(job, {k: v for k, v in saved.items() if k != "checkpoint_every"})


@pytest.mark.parametrize("space", ["sparse_attention", "softargmax_tcn"])
def test_resume_refuses_an_experiment_of_an_older_space_version(prepared_store, tmp_path, space):
    # Saved before per-group learning rates (attention) and norm/bias decay (every space).
    job = _job(tmp_path, store=str(prepared_store), space=space)
    job.experiment_dir.mkdir(parents=True)
    record = job.experiment_dir / JOB_RECORD
    record.write_text(json.dumps({**job.record(), "space_version": 1}))
    (job.experiment_dir / JOURNAL).write_text("")
    before = sorted(p.name for p in job.experiment_dir.iterdir())
    with pytest.raises(ExperimentError) as refused:
        run_tune(job, plan_resources(2, n_folds=2, pool=True), resume=True)
    message = str(refused.value)
    assert f"{space}/v1" in message and f"{space}/v{get_space(space).version}" in message
    assert "another --name" in message
    # Refused before anything was written: the old record and study are as they were.
    assert sorted(p.name for p in job.experiment_dir.iterdir()) == before
    assert json.loads(record.read_text())["space_version"] == 1


def test_resume_refuses_a_changed_fold_assignment(prepared_store, tmp_path):
    """The folds are drawn once and saved; a resume that would draw them otherwise (another
    store, or a changed assignment rule) is refused before anything is written."""
    job = _job(tmp_path, store=str(prepared_store))
    job.experiment_dir.mkdir(parents=True)
    (job.experiment_dir / JOB_RECORD).write_text(json.dumps(job.record()))
    (job.experiment_dir / JOURNAL).write_text("")
    split = job.experiment_dir / SPLIT_FILE
    split.write_text(json.dumps({"split": "kfold", "n_folds": 2, "seed": 0, "hash": "0" * 16}))
    before = split.read_text()
    with pytest.raises(ExperimentError, match="assigns the subjects to folds differently"):
        run_tune(job, plan_resources(2, n_folds=2, pool=True), resume=True)
    assert split.read_text() == before


def test_an_experiment_is_read_back_as_saved_and_a_plain_folder_is_refused(tmp_path):
    job = _job(tmp_path)
    job.experiment_dir.mkdir(parents=True)
    # Saved by an older eegtune: a setting that no longer exists is read, not re-validated.
    saved = {**job.record(), "retired_setting": 1, "max_epochs": 7}
    (job.experiment_dir / JOB_RECORD).write_text(json.dumps(saved))
    (job.experiment_dir / JOURNAL).write_text("")
    exp = Experiment.open(job.experiment_dir)
    assert exp.name == "x" and exp.max_epochs == 7 and exp.settings["retired_setting"] == 1
    assert exp.trial_dir("t1") == job.experiment_dir.resolve() / "folds" / "t1"
    assert exp.split_uri == str(job.experiment_dir.resolve() / SPLIT_FILE)
    with pytest.raises(ExperimentError, match="not an eegtune tune experiment"):
        Experiment.open(tmp_path)


def test_a_mirror_fetches_the_record_and_member_files_only():
    assert experiment_file(JOB_RECORD) and experiment_file(JOURNAL) and experiment_file(SPLIT_FILE)
    for member in ("config.json", "oof_scores.json", "fold0/oof.parquet", "fold3/checkpoint.pt",
                   "fold1/metrics.json"):  # fmt: skip
        assert experiment_file(f"folds/abc/{member}") and experiment_file(f"finalists/a/{member}")
    # Tune's per-trial reports: what each trial spent, for the report.
    assert experiment_file("ray/tune_0/trial_1_abc/result.json")
    for other in ("ray/tune_0/x.json", "folds/abc/fold0/training_state.pt", "folds/abc/driver.json",
                  "train/x/checkpoint.pt", "folds/config.json", "ray/tune_0/result.json",
                  "ray/tune_0/a/b/result.json", "ray/tune_0/a/params.json"):  # fmt: skip
        assert not experiment_file(other)

"""Ray Tune: Optuna TPE (seeded) over a named search space, ASHA over epochs, resumable.

Each trial is a Tune *function* trainable that asks for no CPU: it submits its folds
to the experiment's fold pool (:mod:`eegtune.distributed.fold_pool`) and reports their
pooled epochs (:mod:`eegtune.distributed.trial_driver`); with data-parallel folds it
launches one TorchTrainer instead (Ray 2.60's Train V2 rejects ``Tuner(trainer)``). ASHA and
the sampler see the pooled inner-validation NRMSE; the pooled out-of-fold NRMSE is
reported at the end of each trial and shown in the results table. ``sampler="random"``
with ``scheduler="fifo"`` is the plain random search a search is measured against;
``scheduler="race"`` adds fold racing to ASHA (:mod:`eegtune.distributed.fold_race`): the
trials' drivers stop a trial confidently behind its rivals on the folds run so far (by
default behind the rival ranked after the top quarter; ``race_keep`` moves that bar).

The Optuna study lives in a journal file under the experiment folder, not only in Ray's
searcher state (``Tuner.restore`` is known to lose OptunaSearch's state, ray#30861): a
``--resume`` rebuilds the searcher from the journal, so TPE still sees every finished
trial, and only the missing trials run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from eegtune import storage
from eegtune.distributed.experiment import (
    DRIVER,
    JOB_RECORD,
    JOURNAL,
    Experiment,
    TuneJob,
    check_resume,
)
from eegtune.distributed.fold_pool import start_pool, stop_pool
from eegtune.distributed.fold_pooling import VAL_METRIC
from eegtune.distributed.fold_race import (
    DEFAULT_REDUCTION,
    RACE_BOARD,
    RACE_VERDICT,
    FoldRacer,
    race_rungs,
    read_board,
    start_board,
)
from eegtune.distributed.memory_plan import DataPlan, cluster_memory, plan_data
from eegtune.distributed.resources import TRIAL_DRIVER_MEMORY, ResourcePlan
from eegtune.distributed.shared_windows import SharedWindows, share_windows
from eegtune.distributed.study import (
    TRIAL_ID_ATTR,
    close_interrupted,
    finished_trials,
    journal_sync,
    points_not_tried,
    pull_journal,
    push_journal,
    results_table,
    study_storage,
)
from eegtune.distributed.tracking import tracking_callbacks
from eegtune.distributed.trial_driver import drive_trial, pool_callback, write_trial_config
from eegtune.errors import ConfigError, ExperimentError
from eegtune.search_spaces import get_space
from eegtune.training.config import FoldJob, TrainConfig, make_config
from eegtune.training.data_modes import store_size
from eegtune.training.folds import make_folds, split_record, store_subjects

__all__ = ["TuneJob", "plan_experiment_data", "run_tune"]


def trial_config(job: TuneJob, exp: Experiment, trial_id: str, sampled: dict[str, Any]):
    """A trial's typed settings: the sampled parameters over ``--set``, on the experiment's
    folds; a key neither a space nor ``--set`` may set is refused here."""
    hp = TrainConfig().with_overrides(
        {**job.fixed, **sampled, "seed": job.seed, "max_epochs": job.max_epochs}
    )
    fold_job = FoldJob(
        store=job.store,
        challenge=job.challenge,
        out_dir=exp.trial_uri(trial_id),
        n_folds=job.n_folds,
        split="kfold",
        device=job.device,
        precision=job.precision,
        split_file=exp.split_uri,
        checkpoint_every=job.checkpoint_every,
    )
    return fold_job, hp


def _trainable(job: TuneJob, plan: ResourcePlan, data: DataPlan):
    exp = job.experiment()
    rungs = race_rungs(job.grace_period, job.max_epochs)

    def trial(
        config: dict[str, Any],
        windows: SharedWindows | None = None,
        dispatcher: Any = None,
        board: Any = None,
    ) -> None:
        import ray
        from ray import tune

        trial_id = tune.get_context().get_trial_id()
        fold_job, hp = trial_config(job, exp, trial_id, config)
        storage.makedirs(fold_job.out_dir)
        # Which process drives the trial, for the record and the retry drill; a retried
        # trial overwrites it with its new driver.
        driver = {
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "started": time.time(),
        }
        storage.write_text(storage.join(fold_job.out_dir, DRIVER), json.dumps(driver))
        # A retried trial races afresh: a stop its last driver recorded no longer holds.
        storage.remove(storage.join(fold_job.out_dir, RACE_VERDICT))
        if dispatcher is not None:  # the experiment's fold pool
            flat = make_config(fold_job, hp)  # flattened once, for Ray
            write_trial_config(flat)
            folds = [{**flat, "fold": k} for k in range(job.n_folds)]
            racer = FoldRacer(board, trial_id, rungs) if board is not None else None
            drive_trial(
                dispatcher, trial_id, folds, fold_job.out_dir, job.max_epochs, tune.report, racer
            )
            return
        # Data-parallel folds: a TorchTrainer per trial (imports torch and Ray Train, which
        # a pool trial's driver never needs).
        from ray.tune.integration.ray_train import TuneReportCallback

        from eegtune.distributed.train import run_folds

        run_folds(
            fold_job,
            hp,
            plan,
            storage_path=storage.join(job.experiment_uri, "train"),
            name=f"train_{trial_id}",
            callbacks=[TuneReportCallback()],
            max_failures=job.max_failures,
            windows=windows,
            data_mode=data.mode,
            worker_heap=data.worker_heap,
        )

    return trial


def run_tune(
    job: TuneJob,
    plan: ResourcePlan,
    resume: bool = False,
    verbose: int = 1,
    points_to_evaluate: list[dict[str, Any]] | None = None,
    data: DataPlan | None = None,
    tracking: str | None = None,
):
    """Run (or resume) the search; return the results table, best first.

    ``points_to_evaluate``: configurations (all or some of the space's parameters) that
    the first trials run before the sampler takes over, e.g. known-good settings; with
    ``job.start_at_defaults``, the architecture's defaults run before them unless the
    study already holds that trial.
    ``data``: the data plan (from :func:`plan_experiment_data`); made here if not given.
    ``tracking``: ``tensorboard:DIR`` or ``mlflow:URI`` (see :mod:`.tracking`).
    """
    exp = job.experiment()
    pull_journal(exp)
    if (exp.path / JOURNAL).exists() and not resume:
        raise ExperimentError(
            f"{exp.path} already holds experiment {job.name!r}; "
            f"pass --resume to continue it or choose another --name"
        )
    saved_path = exp.path / JOB_RECORD
    if resume and saved_path.exists():
        check_resume(job, json.loads(saved_path.read_text()))
    split = _fix_split(job, exp, resume)
    if job.scheduler == "race" and not plan.pool_workers:
        raise ConfigError(
            "--scheduler race needs the fold pool (one worker per fold): data-parallel "
            "folds report only their pooled epochs"
        )
    if data is None:  # refused here, before anything is written or read, if it cannot fit
        data, plan = plan_experiment_data(job, plan)
    exp.path.mkdir(parents=True, exist_ok=True)
    if not resume:  # a fresh experiment races nothing a deleted one left behind
        board = storage.join(job.experiment_uri, RACE_BOARD)
        for name in storage.list_files(board):
            storage.remove(storage.join(board, name))
    close_interrupted(exp)
    done = finished_trials(exp)
    remaining = max(0, job.n_trials - done)
    saved = {**exp.settings, "plan": plan.to_dict(), "data": dataclasses.asdict(data)}
    storage.write_text(saved_path, json.dumps(saved, indent=1))
    storage.write_text(exp.split_uri, json.dumps(split, indent=1))
    push_journal(exp)
    if remaining:
        pools: list[tuple[Any, list[Any]]] = []
        try:
            windows = _share_and_start_pool(job, plan, data, verbose, pools)
            search = _SearchRun(job, exp, plan, data, done, remaining, verbose)
            first = points_not_tried(exp, job.first_points())  # not twice over resumes
            points = [*first, *(points_to_evaluate or [])]
            search.fit(windows, pools[0] if pools else None, points or None, tracking)
        finally:
            for pool in pools:
                stop_pool(*pool)
        push_journal(exp)
    return results_table(exp)


def _share_and_start_pool(
    job: TuneJob, plan: ResourcePlan, data: DataPlan, verbose: int, pools: list
) -> SharedWindows | None:
    """Memory mode's shared windows (read once per run of the experiment), and the fold
    pool (appended to ``pools``) when folds train on it; its workers import torch while
    the windows are read."""

    def start(shared: SharedWindows | None) -> None:
        if plan.pool_workers:
            pools.append(start_pool(plan, data.worker_heap, shared))

    if data.mode != "memory":
        start(None)
        return None
    return share_windows(job.store, job.challenge, progress=verbose > 0, while_reading=start)


@dataclass
class _SearchRun:
    """One ``tuner.fit()`` of the experiment: the trials still missing."""

    job: TuneJob
    exp: Experiment
    plan: ResourcePlan
    data: DataPlan
    done: int  # trials the study has finished
    remaining: int
    verbose: int

    def fit(self, windows, pool, points_to_evaluate, tracking) -> None:
        import optuna
        from ray import tune
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        job = self.job
        # Reseeded by the count of finished trials, so a resumed search does not replay
        # the draws its first part already made.
        sampler_seed = (job.seed if job.sampler_seed is None else job.sampler_seed) + self.done
        sampler = (
            optuna.samplers.TPESampler(seed=sampler_seed)
            if job.sampler == "tpe"
            else optuna.samplers.RandomSampler(seed=sampler_seed)
        )
        searcher = _recording(OptunaSearch)(
            space=get_space(job.space).define,
            metric=VAL_METRIC,
            mode="min",
            sampler=sampler,
            study_name=job.name,
            storage=study_storage(self.exp),
            points_to_evaluate=points_to_evaluate,
        )
        callbacks = [journal_sync(self.exp), *tracking_callbacks(tracking, job.name)]
        if pool is not None:
            callbacks.append(pool_callback(pool[0]))
        limited = ConcurrencyLimiter(searcher, max_concurrent=self.plan.max_concurrent_trials)
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(
                    _trainable(job, self.plan, self.data),
                    windows=None if pool else windows,
                    dispatcher=pool[0] if pool else None,
                    board=self._board(),
                ),
                {"CPU": 0, "memory": TRIAL_DRIVER_MEMORY},
            ),
            tune_config=tune.TuneConfig(
                search_alg=limited,
                scheduler=_scheduler(job),
                metric=VAL_METRIC,
                mode="min",
                num_samples=self.remaining,
                # A pool trial only drives: one process can drive trial after trial.
                reuse_actors=pool is not None,
            ),
            run_config=tune.RunConfig(
                name=f"tune_{self.done}",
                storage_path=storage.join(job.experiment_uri, "ray"),
                callbacks=callbacks,
                failure_config=tune.FailureConfig(max_failures=job.max_failures),
                verbose=self.verbose,
            ),
        )
        tuner.fit()

    def _board(self) -> Any:
        """Under ``race``, the experiment's race board, holding the posts of the runs
        before this one (a resume races its new trials against the earlier ones)."""
        if self.job.scheduler != "race":
            return None
        record = storage.join(self.job.experiment_uri, RACE_BOARD)
        try:
            earlier = read_board(record)  # refused here, not in the actor, if unreadable
        except ValueError as exc:
            raise ExperimentError(str(exc)) from exc
        if earlier and self.verbose:
            trials = {t for at_rung in earlier.values() for t in at_rung}
            print(f"race: {len(trials)} earlier trial(s) stay in the race ({record})")
        return start_board(
            self.job.race_confidence, record=record, keep=self.job.race_keep, saved=earlier
        )


def _fix_split(job: TuneJob, exp: Experiment, resume: bool) -> dict:
    """The experiment's folds, drawn once; a resume must find the same assignment (a
    change to how folds are drawn would otherwise mix trials of two splits)."""
    folds = make_folds(store_subjects(job.store, job.challenge), "kfold", job.n_folds, job.seed)
    split = split_record(folds, "kfold", job.n_folds, job.seed)
    if resume and storage.exists(exp.split_uri):
        saved = json.loads(storage.read_text(exp.split_uri))
        if saved.get("hash") != split["hash"]:
            raise ExperimentError(
                f"--resume refused: {exp.split_uri} assigns the subjects to folds differently "
                f"(hash {saved.get('hash')}) from how this eegtune and store would "
                f"({split['hash']}); its trials could not be compared with new ones. Start a "
                f"new experiment (another --name)."
            )
    return split


def plan_experiment_data(job: TuneJob, plan: ResourcePlan) -> tuple[DataPlan, ResourcePlan]:
    """The data mode and per-worker memory for this experiment on the running cluster,
    and the resource plan capped by memory (see :func:`memory_plan.plan_data`)."""
    size = store_size(job.store, job.challenge)
    return plan_data(job.data_mode, size, cluster_memory(), plan)


def _recording(optuna_search: type) -> type:
    """OptunaSearch that writes each Tune trial id into its Optuna trial, so the durable
    study itself says which folder holds each trial's folds."""

    class RecordingOptunaSearch(optuna_search):
        def suggest(self, trial_id: str):
            config = super().suggest(trial_id)
            trial = self._ot_trials.get(trial_id)
            if trial is not None:
                trial.set_user_attr(TRIAL_ID_ATTR, trial_id)
            return config

    return RecordingOptunaSearch


def _scheduler(job: TuneJob):
    """ASHA over epochs (also under ``race``, whose fold stops come from the trials'
    drivers, :mod:`.fold_race`), or FIFO."""
    from ray.tune.schedulers import FIFOScheduler

    # A rung at or after the last epoch would stop trials whose training is over, losing
    # their out-of-fold predictions and saving nothing: rungs lie strictly before it.
    if job.scheduler == "fifo" or job.grace_period >= job.max_epochs:
        return FIFOScheduler()
    return asha_scheduler(job.max_epochs, job.grace_period)


def asha_scheduler(max_epochs: int, grace_period: int):
    """Ray's ASHA over epochs as a search of ``max_epochs`` uses it (the metric and mode
    come from Tune's config; set them with ``set_search_properties`` to drive it alone)."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="epoch",
        max_t=max_epochs - 1,
        grace_period=grace_period,
        reduction_factor=DEFAULT_REDUCTION,  # the race board posts at ASHA's rungs
        # Past max_t a trial goes on to its last epoch and its final report. Also: a
        # trial filed at a rung is never filed again at a lower one when it ends (a race
        # stop's report reaches ASHA twice: as a result and as the trial's end).
        stop_last_trials=False,
    )

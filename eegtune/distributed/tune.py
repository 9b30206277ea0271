"""Ray Tune: Optuna TPE (seeded) over a named search space, ASHA over epochs, resumable.

Each trial is a Tune *function* trainable that asks for no CPU: it submits its folds
to the experiment's fold pool (:mod:`eegtune.distributed.fold_pool`) and reports their
pooled epochs (:mod:`eegtune.distributed.trial_driver`); with data-parallel folds it
launches one TorchTrainer instead (Ray 2.60's Train V2 rejects ``Tuner(trainer)``). ASHA and
the sampler see the pooled inner-validation NRMSE; the pooled out-of-fold NRMSE is
reported at the end of each trial and shown in the results table. ``sampler="random"``
with ``scheduler="fifo"`` is the plain random search a search is measured against.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eegtune import storage
from eegtune.data.bids import atomic_write_text
from eegtune.distributed.fold_pool import start_pool, stop_pool
from eegtune.distributed.fold_pooling import VAL_METRIC
from eegtune.distributed.memory_plan import DataPlan, cluster_memory, plan_data
from eegtune.distributed.resources import TRIAL_DRIVER_MEMORY, ResourcePlan
from eegtune.distributed.shared_windows import SharedWindows, share_windows
from eegtune.distributed.study import (
    JOB_RECORD,
    JOURNAL,
    TRIAL_ID_ATTR,
    _close_interrupted,
    _study,
    finished_trials,
    journal_sync,
    pull_journal,
    push_journal,
    results_table,
)
from eegtune.distributed.tracking import tracking_callbacks
from eegtune.distributed.trial_driver import drive_trial, pool_callback, write_trial_config
from eegtune.search_spaces import get_space
from eegtune.search_spaces.registry import SearchSpace
from eegtune.training.config import TrainConfig
from eegtune.training.data_modes import DATA_MODES, store_size
from eegtune.training.devices import check_device_settings
from eegtune.training.folds import SPLIT_FILE, make_folds, split_record, store_subjects

DRIVER = "driver.json"  # per trial folder: the process that drives the trial
SAMPLERS = ("tpe", "random")
# What a --resume may change (the data mode too: a bigger cluster may hold in memory what
# a smaller one streamed).
RESUMABLE = ("n_trials", "max_failures", "data_mode", "device", "checkpoint_every")
SCHEDULERS = ("asha", "fifo")


@dataclass(frozen=True)
class TuneJob:
    store: str
    challenge: int
    space: str
    n_trials: int
    n_folds: int
    name: str
    storage_path: str
    max_epochs: int = 30
    grace_period: int = 3
    seed: int = 0
    max_failures: int = 1  # restarts of a trial (and of its lost workers) from its checkpoint
    sampler: str = "tpe"  # "random": the baseline a search is measured against
    sampler_seed: int | None = None  # None: ``seed``, which also drives folds and training
    scheduler: str = "asha"  # "fifo": every trial runs all its epochs
    # Training settings every trial shares and the space does not search (``--set``).
    fixed: dict[str, Any] = field(default_factory=dict)
    data_mode: str = "auto"  # memory, stream or auto (see eegtune.distributed.memory_plan)
    device: str = "auto"  # auto: the GPU Ray assigns each fold worker, else its CPUs
    precision: str = "32"  # "bf16": autocast; part of the experiment, unlike the device
    # Fold-pool workers save a fold's training state when the last save is older than this
    # (seconds), and when the fold ends: what a lost worker can lose at most.
    checkpoint_every: float = 30.0

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        TrainConfig().with_overrides(self.fixed)  # unknown keys or bad values fail here
        check_device_settings(self.device, self.precision)
        if self.data_mode not in DATA_MODES:
            raise ValueError(f"data_mode must be one of {DATA_MODES}, got {self.data_mode!r}")
        if not self.checkpoint_every >= 0:
            raise ValueError(f"checkpoint_every must be >= 0 s, got {self.checkpoint_every}")

    @property
    def experiment_uri(self) -> str:
        """Where the experiment's outputs go: a folder, or a URI every node writes to."""
        return storage.join(self.storage_path, self.name)

    @property
    def experiment_dir(self) -> Path:
        """This machine's folder for the experiment's journal and record: the experiment
        folder itself, or with a URI storage path its local mirror (see ``study``)."""
        if storage.is_remote(self.experiment_uri):
            return storage.local_mirror(self.experiment_uri)
        return Path(self.experiment_uri)


def _trainable(job: TuneJob, plan: ResourcePlan, data: DataPlan):
    def trial(
        config: dict[str, Any], windows: SharedWindows | None = None, dispatcher: Any = None
    ) -> None:
        import ray
        from ray import tune

        trial_id = tune.get_context().get_trial_id()
        out_dir = storage.join(job.experiment_uri, "folds", trial_id)
        storage.makedirs(out_dir)
        # Which process drives the trial, for the record and the retry drill; a retried
        # trial overwrites it with its new driver.
        driver = {
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "started": time.time(),
        }
        storage.write_text(storage.join(out_dir, DRIVER), json.dumps(driver))
        flat = {
            **job.fixed,
            **config,
            "store": job.store,
            "challenge": job.challenge,
            "n_folds": job.n_folds,
            "split": "kfold",
            "seed": job.seed,
            "max_epochs": job.max_epochs,
            "out_dir": out_dir,
            "device": job.device,
            "precision": job.precision,
            "split_file": storage.join(job.experiment_uri, SPLIT_FILE),
            "checkpoint_every": job.checkpoint_every,
        }
        if dispatcher is not None:  # the experiment's fold pool
            write_trial_config(flat)
            folds = [{**flat, "fold": k} for k in range(job.n_folds)]
            drive_trial(dispatcher, trial_id, folds, out_dir, job.max_epochs, tune.report)
            return
        # Data-parallel folds: a TorchTrainer per trial (imports torch and Ray Train, which
        # a pool trial's driver never needs).
        from ray.tune.integration.ray_train import TuneReportCallback

        from eegtune.distributed.train import run_folds

        run_folds(
            flat,
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


def _searched_keys(space: SearchSpace, draws: int = 64) -> set[str]:
    """The config keys a space sets, from throwaway random draws of its define-by-run
    function (several, so that conditional parameters show up too)."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" lines
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        keys: set[str] = set()
        for _ in range(draws):
            trial = study.ask()
            constants = space.define(trial) or {}
            keys |= set(trial.params) | set(constants)
    finally:
        optuna.logging.set_verbosity(level)
    return keys


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
    the first trials run before the sampler takes over, e.g. known-good settings.
    ``data``: the data plan (from :func:`plan_experiment_data`); made here if not given.
    ``tracking``: ``tensorboard:DIR`` or ``mlflow:URI`` (see :mod:`.tracking`).
    """
    space = get_space(job.space)
    if not space.supports(job.challenge):
        raise ValueError(f"space {space.name!r} is for challenge(s) {space.challenges}")
    # The experiment's own settings come from its flags, not from --set; the space is
    # sampled for its keys only when something is fixed.
    clash = (
        sorted(set(job.fixed) & (_searched_keys(space) | {"seed", "max_epochs"}))
        if job.fixed
        else []
    )
    if clash:
        raise ValueError(
            f"cannot fix {clash}: space {space.name!r} searches them, or a flag of its own "
            f"(--seed, --max-epochs) sets them"
        )
    pull_journal(job)
    if (job.experiment_dir / JOURNAL).exists() and not resume:
        raise FileExistsError(
            f"{job.experiment_dir} already holds experiment {job.name!r}; "
            f"pass --resume to continue it or choose another --name"
        )
    record = {**job.__dict__, "space_version": space.version}
    saved_path = job.experiment_dir / JOB_RECORD
    if resume and saved_path.exists():
        # Settings added since the experiment was saved count as their defaults.
        defaults = {
            f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
            for f in dataclasses.fields(TuneJob)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        }
        saved = {**defaults, **json.loads(saved_path.read_text())}
        changed = [k for k in record if k not in RESUMABLE and saved.get(k) != record[k]]
        if "space_version" in changed:
            # One study must hold one space: TPE would model the old trials' parameters
            # (or their absence) as draws from the new ranges.
            raise ValueError(
                f"--resume refused: experiment {job.name!r} was searched with space "
                f"{space.name}/v{saved.get('space_version')}, and this eegtune has "
                f"{space.label}, whose parameters or training recipe differ; its trials "
                f"cannot share one study. Start a new experiment (another --name); the old "
                f"one's trials stay usable by eegtune ensemble and eegtune report."
            )
        if changed:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {record[k]!r}" for k in changed)
            raise ValueError(f"--resume must continue the same experiment; changed {detail}")
    split = _fix_split(job, resume)
    if data is None:  # refused here, before anything is written or read, if it cannot fit
        data, plan = plan_experiment_data(job, plan)
    job.experiment_dir.mkdir(parents=True, exist_ok=True)
    _close_interrupted(job)
    done = finished_trials(job)
    remaining = max(0, job.n_trials - done)
    saved = {**record, "plan": plan.to_dict(), "data": dataclasses.asdict(data)}
    atomic_write_text(saved_path, json.dumps(saved, indent=1))
    storage.write_text(storage.join(job.experiment_uri, SPLIT_FILE), json.dumps(split, indent=1))
    push_journal(job)
    if remaining:
        pools: list[tuple[Any, list[Any]]] = []
        try:
            windows = _share_and_start_pool(job, plan, data, verbose, pools)
            search = _SearchRun(job, plan, data, done, remaining, verbose)
            search.fit(windows, pools[0] if pools else None, points_to_evaluate, tracking)
        finally:
            for pool in pools:
                stop_pool(*pool)
        push_journal(job)
    return results_table(job)


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
            storage=_study(job),
            points_to_evaluate=points_to_evaluate,
        )
        callbacks = [journal_sync(job), *tracking_callbacks(tracking, job.name)]
        if pool is not None:
            callbacks.append(pool_callback(pool[0]))
        limited = ConcurrencyLimiter(searcher, max_concurrent=self.plan.max_concurrent_trials)
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(
                    _trainable(job, self.plan, self.data),
                    windows=None if pool else windows,
                    dispatcher=pool[0] if pool else None,
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


def _fix_split(job: TuneJob, resume: bool) -> dict:
    """The experiment's folds, drawn once; a resume must find the same assignment."""
    folds = make_folds(store_subjects(job.store, job.challenge), "kfold", job.n_folds, job.seed)
    split = split_record(folds, "kfold", job.n_folds, job.seed)
    location = storage.join(job.experiment_uri, SPLIT_FILE)
    if resume and storage.exists(location):
        saved = json.loads(storage.read_text(location))
        if saved.get("hash") != split["hash"]:
            raise ValueError(
                f"--resume refused: {location} assigns the subjects to folds differently "
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
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    # A rung at or after the last epoch would stop trials whose training is over, losing
    # their out-of-fold predictions and saving nothing: rungs lie strictly before it.
    if job.scheduler == "fifo" or job.grace_period >= job.max_epochs:
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="epoch",
        max_t=job.max_epochs - 1,
        grace_period=job.grace_period,
        reduction_factor=2,
        # Past max_t a trial goes on to its last epoch and its final report.
        stop_last_trials=False,
    )

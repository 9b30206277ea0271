"""The resource plan: how many CPUs each fold worker gets, and how many trials fit at once.

Two silent deadlocks on small clusters shape it (checked on Ray 2.60):

1. Train workers holding every CPU leave the read tasks that share the store's windows
   (and re-read them if a node is lost) nothing to run on, and training hangs without an
   error. The plan keeps ``data_reserve_cpus`` out of every worker's reach.
2. A Tune trial that holds a CPU as the Train driver starves its own workers. The trial
   driver asks for no CPU (a token of memory instead, since Ray refuses an empty bundle),
   so ``max_concurrent_trials`` must be derived from the workers' CPUs alone.

A configuration that cannot be scheduled is refused here, with the numbers, instead of
hanging inside Ray.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from eegtune.errors import EegtuneError

# Ray rejects a bundle with nothing in it; a trial driver asks for this much memory and
# no CPU, so it never competes with its own fold workers.
TRIAL_DRIVER_MEMORY = 100 * 2**20


class ResourceError(EegtuneError, ValueError):
    """The requested layout cannot be scheduled on the cluster without deadlocking."""


@dataclass(frozen=True)
class ResourcePlan:
    total_cpus: float
    n_folds: int
    workers_per_fold: int
    cpus_per_worker: float
    data_reserve_cpus: float
    max_concurrent_trials: int
    total_gpus: float = 0.0
    gpus_per_fold: float = 0.0  # shared by the fold's workers; 0.25 puts four folds on a GPU
    # > 0: the experiment's fold pool (eegtune.distributed.fold_pool), this many workers
    # shared by every trial; 0: each trial starts its own TorchTrainer.
    pool_workers: int = 0

    @property
    def gpus_per_worker(self) -> float:
        return self.gpus_per_fold / self.workers_per_fold

    @property
    def workers_per_trial(self) -> int:
        return self.n_folds * self.workers_per_fold

    @property
    def cpus_per_trial(self) -> float:
        return self.workers_per_trial * self.cpus_per_worker

    @property
    def torch_threads(self) -> int:
        """Threads per worker: its whole CPUs, at least one."""
        return max(1, math.floor(self.cpus_per_worker + 1e-9))

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        if self.pool_workers:
            gpus = f" and {self.gpus_per_fold:g} GPU" if self.gpus_per_fold else ""
            return (
                f"a pool of {self.pool_workers} fold workers × {self.cpus_per_worker:g} CPU{gpus} "
                f"({self.torch_threads} torch thread(s) each), started once and shared by every "
                f"trial's {self.n_folds} folds; {self.data_reserve_cpus:g} of "
                f"{self.total_cpus:g} CPUs kept for reading the store; up to "
                f"{self.max_concurrent_trials} trial(s) at once"
            )
        gpus = (
            f" and {self.n_folds} × {self.gpus_per_fold:g} = {self.n_folds * self.gpus_per_fold:g} "
            f"of {self.total_gpus:g} GPU(s)"
            if self.gpus_per_fold
            else ""
        )
        return (
            f"{self.n_folds} folds × {self.workers_per_fold} worker(s) × "
            f"{self.cpus_per_worker:g} CPU = {self.cpus_per_trial:g} CPU{gpus} per trial; "
            f"{self.data_reserve_cpus:g} of {self.total_cpus:g} CPUs kept for reading the store; "
            f"up to {self.max_concurrent_trials} trial(s) at once"
        )


def plan_resources(
    total_cpus: float,
    n_folds: int,
    workers_per_fold: int = 1,
    cpus_per_worker: float | None = None,
    data_reserve_cpus: float | None = None,
    max_concurrent_trials: int | None = None,
    gpus_per_fold: float = 0.0,
    total_gpus: float = 0.0,
    pool: bool = False,
) -> ResourcePlan:
    """Lay out one trial's fold workers on ``total_cpus``; refuse what would deadlock.

    By default a quarter of the cluster (at least half a CPU) stays with the reads, and
    each worker gets an equal share of the rest, at most 1 CPU for a fold's worker (more
    threads buy little for these small models).

    ``pool``: lay out the experiment's fold pool instead (single-worker folds only): half
    a CPU for the reads, as many workers as the rest holds at up to 1 CPU each, shared by
    all trials, and enough concurrent trials to keep them busy while trials start and end.
    """
    if n_folds < 1 or workers_per_fold < 1:
        raise ResourceError("n_folds and workers_per_fold must be at least 1")
    if total_cpus <= 0:
        raise ResourceError(f"the cluster reports {total_cpus} CPUs")
    # The pool's workers start after the windows are shared, so its reads are only those
    # that Ray re-runs for a lost node: half a CPU (two read tasks) is enough.
    default_reserve = 0.5 if pool else max(0.5, 0.25 * total_cpus)
    reserve = default_reserve if data_reserve_cpus is None else data_reserve_cpus
    if reserve < 0 or reserve >= total_cpus:
        raise ResourceError(
            f"keeping {reserve:g} CPUs for reading the store leaves nothing for training on "
            f"{total_cpus:g} CPUs"
        )
    usable = total_cpus - reserve
    if pool:
        if workers_per_fold != 1:
            raise ResourceError("the fold pool trains single-worker folds only")
        return _plan_pool(
            total_cpus, reserve, n_folds, cpus_per_worker, max_concurrent_trials,
            gpus_per_fold, total_gpus,
        )  # fmt: skip
    workers = n_folds * workers_per_fold
    if cpus_per_worker is None:
        cpus_per_worker = min(1.0, math.floor(usable / workers * 100) / 100)
        if cpus_per_worker <= 0:
            raise ResourceError(
                f"{workers} fold workers cannot share the {usable:g} CPUs left after keeping "
                f"{reserve:g} for reading the store; use fewer folds or workers per fold"
            )
    if cpus_per_worker <= 0:
        raise ResourceError(f"cpus_per_worker must be > 0, got {cpus_per_worker}")
    per_trial = workers * cpus_per_worker
    if per_trial > usable + 1e-9:
        raise ResourceError(
            f"one trial needs {workers} workers × {cpus_per_worker:g} CPU = {per_trial:g} CPUs, "
            f"but only {usable:g} of {total_cpus:g} are left after keeping {reserve:g} for "
            f"the store's read tasks (all of them would deadlock the data pipeline); use fewer "
            f"folds, fewer workers per fold or fewer CPUs per worker"
        )
    fit = max(1, math.floor(usable / per_trial + 1e-9))
    gpu_fit = (
        _gpu_fit(n_folds, workers_per_fold, gpus_per_fold, total_gpus) if gpus_per_fold else fit
    )
    if max_concurrent_trials is not None:
        if max_concurrent_trials < 1:
            raise ResourceError("max_concurrent_trials must be at least 1")
        if max_concurrent_trials > min(fit, gpu_fit):
            gpu_need = (
                f" and {max_concurrent_trials * n_folds * gpus_per_fold:g} of {total_gpus:g} GPUs"
                if gpus_per_fold
                else ""
            )
            raise ResourceError(
                f"{max_concurrent_trials} concurrent trials need "
                f"{max_concurrent_trials * per_trial:g} of {usable:g} usable CPUs{gpu_need}; "
                f"at most {min(fit, gpu_fit)} fit"
            )
        fit = max_concurrent_trials
    fit = min(fit, gpu_fit)
    return ResourcePlan(
        total_cpus=float(total_cpus),
        n_folds=n_folds,
        workers_per_fold=workers_per_fold,
        cpus_per_worker=float(cpus_per_worker),
        data_reserve_cpus=float(reserve),
        max_concurrent_trials=fit,
        total_gpus=float(total_gpus),
        gpus_per_fold=float(gpus_per_fold),
    )


def _plan_pool(
    total_cpus: float,
    reserve: float,
    n_folds: int,
    cpus_per_worker: float | None,
    max_concurrent_trials: int | None,
    gpus_per_fold: float,
    total_gpus: float,
) -> ResourcePlan:
    usable = total_cpus - reserve
    if cpus_per_worker is None:
        # One worker per whole usable CPU (one torch thread each), the remainder shared:
        # 1.5 usable CPUs make two one-thread workers, not one.
        cpus_per_worker = math.floor(usable / max(1, math.ceil(usable - 1e-9)) * 100) / 100
    if cpus_per_worker <= 0 or cpus_per_worker > usable + 1e-9:
        raise ResourceError(
            f"a fold worker of {cpus_per_worker:g} CPU does not fit in the {usable:g} CPUs "
            f"left after keeping {reserve:g} for reading the store"
        )
    workers = math.floor(usable / cpus_per_worker + 1e-9)
    if gpus_per_fold:
        per_fold_fit = _gpu_fit(1, 1, gpus_per_fold, total_gpus)
        workers = min(workers, per_fold_fit)
    # Enough trials to keep every worker busy, plus one whose folds are ready to start
    # while another trial's last folds finish.
    concurrent = max_concurrent_trials or math.ceil(workers / n_folds) + 1
    if concurrent < 1:
        raise ResourceError("max_concurrent_trials must be at least 1")
    return ResourcePlan(
        total_cpus=float(total_cpus),
        n_folds=n_folds,
        workers_per_fold=1,
        cpus_per_worker=float(cpus_per_worker),
        data_reserve_cpus=float(reserve),
        max_concurrent_trials=concurrent,
        total_gpus=float(total_gpus),
        gpus_per_fold=float(gpus_per_fold),
        pool_workers=workers,
    )


def _gpu_fit(n_folds: int, workers_per_fold: int, gpus_per_fold: float, total_gpus: float) -> int:
    """How many trials' folds the cluster's GPUs hold at once; refuse what Ray cannot place."""
    if gpus_per_fold < 0:
        raise ResourceError(f"gpus_per_fold must be >= 0, got {gpus_per_fold}")
    per_worker = gpus_per_fold / workers_per_fold
    # Ray places a fractional GPU request only below one GPU; above it, whole GPUs.
    if per_worker > 1 and not float(per_worker).is_integer():
        raise ResourceError(
            f"{gpus_per_fold:g} GPU per fold over {workers_per_fold} worker(s) is "
            f"{per_worker:g} GPU per worker; Ray places fractions of one GPU or whole GPUs only"
        )
    per_trial = n_folds * gpus_per_fold
    if per_trial > total_gpus + 1e-9:
        raise ResourceError(
            f"one trial needs {n_folds} folds × {gpus_per_fold:g} GPU = {per_trial:g} GPUs, "
            f"but the cluster has {total_gpus:g}; lower --gpus-per-fold (0.25 puts four folds "
            f"on one GPU) or add GPU nodes"
        )
    return max(1, math.floor(total_gpus / per_trial + 1e-9))

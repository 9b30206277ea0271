"""The experiment's fold workers: started once, fed fold after fold, trial after trial.

A trial used to start its own ``TorchTrainer``: a controller and K worker processes that
each imported torch, about 12 s before its first epoch, and a barrier across the folds at
every report. Here an experiment starts a pool of :class:`FoldWorker` actors once (one per
fold slot the cluster holds); each imports torch once and takes its views of the shared
windows once. A :class:`Dispatcher` actor queues the folds that trials submit, hands each
to the next free worker, and passes every epoch a fold finishes back to its trial. No fold
waits for another fold or for its trial: the trial pools epochs as they arrive
(:mod:`eegtune.distributed.trial_driver`).

Why actors and not Ray Train here: Train's ``report`` is a barrier across its workers, its
worker group is restarted whole when one worker fails, and it cannot outlive the ``fit()``
call that started it, so one long-lived group would tie every trial to every other.
Data-parallel folds (``--workers-per-fold`` above 1) still train under Ray Train
(:mod:`eegtune.distributed.train`), where the collectives are the point.

Faults:

- a worker that dies (its process killed, its node lost) is restarted by Ray; its fold
  goes back to the front of the queue and resumes from its last saved training state
  (saved every ``checkpoint_every`` seconds and when the fold ends), so at most that much
  work is lost;
- a trial whose driver dies is retried by Tune: its new driver submits the same folds,
  the dispatcher keeps those still queued or running, and replays the epochs already done;
- a trial that Tune stops (ASHA) or gives up on has its folds cancelled by
  :class:`PoolCallback`: queued ones are dropped, running ones stop after their epoch.

The pool's actors belong to the process that started it (``eegtune tune``), so they end
with it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

# How often a worker retries a fold it lost to a crash before the fold counts as failed.
MAX_FOLD_ATTEMPTS = 4


@dataclass
class _Task:
    trial: str
    fold: int
    config: dict[str, Any]
    attempts: int = 0

    @property
    def key(self) -> tuple[str, int]:
        return (self.trial, self.fold)


@dataclass
class _Trial:
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False


class Dispatcher:
    """Queues folds, leases them to workers, and keeps each trial's events (async actor)."""

    def __init__(self) -> None:
        self.pending: collections.deque[_Task] = collections.deque()
        self.running: dict[tuple[str, int], int] = {}  # (trial, fold) -> worker index
        self.trials: dict[str, _Trial] = {}
        self.workers: list[Any] = []
        self.wakeup = asyncio.Event()
        # Held so that the event loop's weak references are not the only ones to them.
        self.loops: list[asyncio.Task] = []

    async def start(self, workers: list[Any]) -> None:
        self.workers = list(workers)
        self.loops = [asyncio.ensure_future(self._serve(i)) for i in range(len(workers))]

    async def submit(self, trial: str, configs: list[dict[str, Any]]) -> None:
        """Queue a trial's folds; a retried trial's folds already queued or running stay."""
        state = self.trials.setdefault(trial, _Trial())
        state.cancelled = False
        # A retry runs a failed fold again (from its saved state): a transient failure
        # should not fail the retry too.
        state.events = [e for e in state.events if "error" not in e]
        queued = {t.key for t in self.pending}
        for config in configs:
            task = _Task(trial, int(config["fold"]), config)
            if task.key not in queued and task.key not in self.running:
                done = any(e.get("final") and e["fold"] == task.fold for e in state.events)
                if not done:
                    self.pending.append(task)
        self.wakeup.set()

    async def cancel(self, trial: str, forget: bool = False) -> None:
        """Drop a trial's queued folds; its running folds stop after their current epoch."""
        state = self.trials.get(trial)
        if state is not None:
            state.cancelled = True
            state.changed.set()
        self.pending = collections.deque(t for t in self.pending if t.trial != trial)
        if forget:
            self.trials.pop(trial, None)

    async def epoch(self, trial: str, fold: int, metrics: dict[str, Any]) -> bool:
        """A fold's finished epoch; returns True when the fold should stop (cancelled)."""
        state = self.trials.get(trial)
        if state is None or state.cancelled:
            return True
        self._emit(state, {"fold": fold, "epoch_metrics": metrics})
        return False

    async def events(
        self, trial: str, cursor: int, timeout: float
    ) -> tuple[list[dict[str, Any]], int]:
        """The trial's events from ``cursor`` on, waiting up to ``timeout`` s for one."""
        state = self.trials.setdefault(trial, _Trial())
        if cursor >= len(state.events):
            state.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(state.changed.wait(), timeout)
        return state.events[cursor:], len(state.events)

    async def status(self) -> dict[str, Any]:
        return {
            "pending": [list(t.key) for t in self.pending],
            "running": {f"{k[0]}/{k[1]}": w for k, w in self.running.items()},
            "workers": len(self.workers),
        }

    def _emit(self, state: _Trial, event: dict[str, Any]) -> None:
        state.events.append(event)
        state.changed.set()

    async def _next(self) -> _Task:
        while True:
            for task in self.pending:
                # A fold resubmitted while its old lease still runs waits for that lease.
                if task.key not in self.running:
                    self.pending.remove(task)
                    return task
            self.wakeup.clear()
            await self.wakeup.wait()

    async def _serve(self, index: int) -> None:
        import ray

        worker = self.workers[index]
        while True:
            task = await self._next()
            self.running[task.key] = index
            task.attempts += 1
            try:
                result = await worker.run_fold.remote(task.trial, task.fold, task.config)
            except ray.exceptions.RayActorError:
                # The worker's process died; Ray restarts it. The fold resumes from its
                # saved state, first in line, unless it keeps killing its workers.
                retry = task.attempts < MAX_FOLD_ATTEMPTS
                state = self.trials.get(task.trial)
                if retry and state is not None and not state.cancelled:
                    self.pending.appendleft(task)
                elif state is not None:
                    lost = f"lost its worker {task.attempts} times"
                    self._emit(state, {"fold": task.fold, "error": lost})
                await asyncio.sleep(0.5)
            except ray.exceptions.RayTaskError as exc:
                state = self.trials.get(task.trial)
                if state is not None:
                    self._emit(state, {"fold": task.fold, "error": str(exc.cause or exc)})
            else:
                state = self.trials.get(task.trial)
                if state is not None and result is not None:
                    self._emit(state, {"fold": task.fold, "final": result})
            finally:
                self.running.pop(task.key, None)
                self.wakeup.set()


class FoldCancelled(Exception):
    """Raised inside ``train_func`` when the fold's trial was stopped."""


class PoolReporter:
    """``train_func``'s reporter in a pool worker: epochs to the dispatcher, the training
    state to the fold's folder by time."""

    def __init__(
        self, dispatcher: Any, trial: str, fold: int, state_path: str, checkpoint_every: float
    ) -> None:
        self.dispatcher = dispatcher
        self.trial = trial
        self.fold = fold
        self.state_path = state_path
        self.checkpoint_every = checkpoint_every
        self.last_save = time.monotonic()
        self.first_report_at: float | None = None
        self.seconds_reporting = 0.0  # what reporting and saving cost this fold
        self.seconds_in_epochs = 0.0  # what its epochs' training and validation took
        self.epochs = 0

    def report(self, metrics: dict[str, Any], checkpoint_dir=None, state=None) -> None:
        import ray

        from eegtune.training.training_state import save_state

        if "inner_val_n" not in metrics:  # not an epoch (train_func's final "done" report)
            return
        t0 = time.perf_counter()
        if self.first_report_at is None:
            self.first_report_at = time.time()
        self.seconds_in_epochs += float(metrics.get("epoch_seconds", 0.0))
        self.epochs += 1
        ended = state is not None and state.stopped
        due = time.monotonic() - self.last_save >= self.checkpoint_every
        if state is not None and (ended or due):
            save_state(state, self.state_path)
            self.last_save = time.monotonic()
        stop = ray.get(self.dispatcher.epoch.remote(self.trial, self.fold, metrics))
        self.seconds_reporting += time.perf_counter() - t0
        if stop:
            if state is not None and not ended:  # a retried trial resumes from here
                save_state(state, self.state_path)
            raise FoldCancelled(f"trial {self.trial} fold {self.fold} was stopped")

    def restore_state(self, fingerprint: str):
        from eegtune.training.training_state import load_state

        return load_state(self.state_path, fingerprint)


class FoldWorker:
    """One fold slot: trains the folds the dispatcher gives it, one after another."""

    def __init__(self, index: int, dispatcher: Any, windows: Any, threads: int) -> None:
        import torch

        # What a fold needs, imported while the experiment starts rather than in its first
        # fold: the workers start while the windows are read and Tune sets up.
        import eegtune.distributed.shared_windows
        import eegtune.training.fold_stream
        import eegtune.training.train_func  # noqa: F401

        torch.set_num_threads(threads)
        self.index = index
        self.dispatcher = dispatcher
        self.windows = windows  # SharedWindows (memory mode) or None (stream mode)
        self.threads = threads
        self.started = time.time()

    def run_fold(self, trial: str, fold: int, config: dict[str, Any]) -> dict[str, Any] | None:
        """Train one fold through the unchanged ``train_func``; its final metrics, or None
        when its trial was stopped."""
        import json

        import ray

        from eegtune import storage
        from eegtune.distributed.shared_windows import experiment_fold_source
        from eegtune.distributed.train import worker_device
        from eegtune.training.config import parse_config
        from eegtune.training.fold_data import using_fold_source
        from eegtune.training.reporting import reporting_to
        from eegtune.training.run_files import fold_dir as fold_dir_of
        from eegtune.training.train_func import train_func
        from eegtune.training.training_state import STATE_FILE

        config = {**config, "threads": self.threads}
        config["device"] = worker_device(str(config.get("device", "auto")), under_train=False)
        job, _ = parse_config(config)
        fold_dir = fold_dir_of(job.out_dir, fold)
        timeline = {"fold_received": time.time(), "worker_started": self.started}
        placement = {
            "fold": fold, "replica": 0, "worker": self.index,
            "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
            "device": job.device, "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "timeline": timeline,
        }  # fmt: skip
        placement_file = storage.join(fold_dir, "placement_0.json")
        storage.write_text(placement_file, json.dumps(placement))
        reporter = PoolReporter(
            self.dispatcher, trial, fold, storage.join(fold_dir, STATE_FILE), job.checkpoint_every
        )

        def source(store, challenge, subjects):
            timeline["data_ready"] = time.time()
            return experiment_fold_source(self.windows, store, challenge, subjects)

        try:
            with reporting_to(reporter), using_fold_source(source):
                metrics = train_func(config)
        except FoldCancelled:
            return None
        timeline["first_report"] = reporter.first_report_at
        timeline["done"] = time.time()
        placement["seconds_reporting"] = reporter.seconds_reporting
        placement["seconds_in_epochs"] = reporter.seconds_in_epochs
        placement["epochs"] = reporter.epochs
        storage.write_text(placement_file, json.dumps(placement))
        return {k: v for k, v in metrics.items() if k != "subjects"}


def start_pool(plan, worker_heap: int, windows: Any) -> tuple[Any, list[Any]]:
    """Start the dispatcher and ``plan.pool_workers`` fold workers; each worker asks Ray
    for its CPUs, GPU share and ``worker_heap`` of memory, and is restarted if it dies."""
    import ray

    dispatcher = ray.remote(num_cpus=0)(Dispatcher).remote()
    worker = ray.remote(FoldWorker)
    workers = [
        worker.options(
            num_cpus=plan.cpus_per_worker,
            num_gpus=plan.gpus_per_fold,
            memory=worker_heap,
            max_restarts=-1,
            max_task_retries=0,
        ).remote(i, dispatcher, windows, plan.torch_threads)
        for i in range(plan.pool_workers)
    ]
    ray.get(dispatcher.start.remote(workers))
    return dispatcher, workers


def stop_pool(dispatcher: Any, workers: list[Any]) -> None:
    import ray

    for actor in [*workers, dispatcher]:
        ray.kill(actor, no_restart=True)

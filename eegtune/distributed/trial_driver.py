"""A Tune trial on the fold pool: submit the K folds, pool their epochs, report to Tune.

The trial itself trains nothing. It submits its folds to the experiment's
:class:`~eegtune.distributed.fold_pool.Dispatcher` and reads their events as they come:
every epoch a fold finishes, and each fold's final metrics. Epoch ``e`` is reported to
Tune once every fold has finished it (a fold that stopped early counts with its last
epoch), as the pooled inner-validation NRMSE ASHA and the sampler act on, computed exactly
from the folds' error sums (:func:`~eegtune.distributed.fold_pooling.aggregate_epoch`).
When every fold has ended, the pooled figures of the epochs the folds kept and the pooled
out-of-fold NRMSE follow, with the same keys as a Ray Train trial's.

:class:`PoolCallback` runs in the experiment's driver and cancels the folds of a trial
that Tune stopped or gave up on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eegtune.distributed.fold_pooling import VAL_METRIC, aggregate_epoch, final_report
from eegtune.distributed.fold_race import FoldRacer, Verdict, write_verdict

POLL_SECONDS = 5.0  # the longest a trial waits for an event before asking again


class EpochPooler:
    """Collects one trial's fold events; yields the pooled reports as they become due."""

    def __init__(self, n_folds: int) -> None:
        self.n_folds = n_folds
        self.epochs: list[dict[int, dict[str, Any]]] = [{} for _ in range(n_folds)]
        self.finals: list[dict[str, Any] | None] = [None] * n_folds
        self.reported = 0  # pooled epochs reported so far

    def add(self, event: dict[str, Any]) -> None:
        fold = int(event["fold"])
        if "error" in event:
            raise RuntimeError(f"fold {fold} failed: {event['error']}")
        if "final" in event:
            self.finals[fold] = event["final"]
        else:
            metrics = event["epoch_metrics"]
            # A fold resumed from an older save repeats epochs: the latest report wins.
            self.epochs[fold][int(metrics["epoch"])] = metrics

    def _at(self, fold: int, epoch: int) -> dict[str, Any] | None:
        """The fold's metrics at ``epoch``, its last ones once it ended before it."""
        if epoch in self.epochs[fold]:
            return self.epochs[fold][epoch]
        if self.finals[fold] is not None and self.epochs[fold]:
            last = max(self.epochs[fold])
            if last < epoch:
                return {**self.epochs[fold][last], "stopped": True, "epoch_seconds": 0.0}
        return None

    def due(self) -> list[dict[str, Any]]:
        """The pooled reports for every epoch all folds have now reached."""
        out = []
        while True:
            per_fold = [self._at(k, self.reported) for k in range(self.n_folds)]
            if any(m is None for m in per_fold):
                return out
            if all(m.get("stopped") for m in per_fold) and self.finished:
                return out  # past every fold's end: nothing new to report
            report = aggregate_epoch(per_fold)  # type: ignore[arg-type]
            # Every fold-epoch trained so far, the ones past this epoch included: what a
            # search's budget is counted in (a trial stopped here paid for them too).
            report["fold_epochs"] = self.fold_epochs
            out.append(report)
            self.reported += 1

    @property
    def fold_epochs(self) -> int:
        return sum(len(epochs) for epochs in self.epochs)

    @property
    def finished(self) -> bool:
        return all(f is not None for f in self.finals)

    def final_report(self, out_dir: str, max_epochs: int) -> dict[str, Any]:
        """The figures the searcher ranks by, once every fold has ended."""
        bests = [
            min(epochs.values(), key=lambda m: m["inner_val_rmse"]) if epochs else None
            for epochs in self.epochs
        ]
        final = final_report(bests, [f or {} for f in self.finals], out_dir, max_epochs)
        return {**final, "fold_epochs": self.fold_epochs}

    def race_report(self, verdict: Verdict) -> dict[str, Any]:
        """The last report of a trial racing stopped: the board's estimate of its pooled
        figure on every fold, and why it stopped."""
        # "epoch" at the rung: ASHA files the estimate there, as if it had judged the
        # trial. Without it, the trials racing stops early (the weak ones) would be missing
        # from ASHA's rung and its cut would rise above the median of all trials: it then
        # stopped trials that would have won (benchmarks/race_replay.py). The estimate
        # comes from each fold's best epoch so far, where ASHA's own figures come from the
        # rung's epoch, so it may flatter the stopped trial a little.
        return {
            "epoch": verdict.rung,
            VAL_METRIC: verdict.estimate,
            "fold_epochs": self.fold_epochs,
            "stopped_by": "race",
            "stop_reason": verdict.reason(),
            "final": True,
        }


def write_trial_config(config: dict[str, Any]) -> None:
    """The trial's ``config.json``: every training setting, defaults included, so that a
    retrain (finalists) reads the recipe this run had even after a later eegtune changes a
    default."""
    import json

    from eegtune import storage
    from eegtune.training.config import TrainConfig
    from eegtune.training.run_files import CONFIG

    complete = {**config, **TrainConfig.from_flat(config).to_flat()}
    storage.write_text(
        storage.join(str(config["out_dir"]), CONFIG),
        json.dumps(complete, indent=1, default=str),
    )


def drive_trial(
    dispatcher: Any,
    trial_id: str,
    fold_configs: list[dict[str, Any]],
    out_dir: str,
    max_epochs: int,
    send: Callable[[dict[str, Any]], None],
    racer: FoldRacer | None = None,
) -> dict[str, Any]:
    """Submit the folds and ``send`` each pooled report as it becomes due; return the
    final one (also sent). With a ``racer`` (``--scheduler race``), a trial that loses the
    race cancels its folds (queued ones never start) and ends with the race's report."""
    import ray

    pooler = EpochPooler(len(fold_configs))
    ray.get(dispatcher.submit.remote(trial_id, fold_configs))
    cursor = 0
    while not pooler.finished:
        events, cursor = ray.get(dispatcher.events.remote(trial_id, cursor, POLL_SECONDS))
        for event in events:
            pooler.add(event)
        # The race first: a pooled report sent first could have ASHA end the trial before
        # its stop and reason are recorded.
        # Not once every fold has ended: the trial is over and its predictions are written
        # (a fold ended on patience posts its later rungs with its final event).
        verdict = (
            racer.check(pooler.epochs, [f is not None for f in pooler.finals])
            if racer and not pooler.finished
            else None
        )
        if verdict is not None:
            ray.get(dispatcher.cancel.remote(trial_id))
            write_verdict(out_dir, verdict)
            final = pooler.race_report(verdict)
            send(final)
            return final
        for report in pooler.due():
            send(report)
    final = pooler.final_report(out_dir, max_epochs)
    send(final)
    return final


def pool_callback(dispatcher: Any):
    """A Tune callback that cancels the folds of trials Tune has finished with."""
    from ray.tune import Callback

    class PoolCallback(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            # Completed or stopped by the scheduler: nothing of it should train on.
            dispatcher.cancel.remote(trial.trial_id, forget=True)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            dispatcher.cancel.remote(trial.trial_id, forget=True)

    return PoolCallback()

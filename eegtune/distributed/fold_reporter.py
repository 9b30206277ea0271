"""How a trial's data-parallel folds report to Ray Train as one: pooled epochs and joint
checkpoints. (Single-worker folds train on the fold pool and report through
:mod:`eegtune.distributed.trial_driver` instead.)

Every fold worker runs ``train_func`` with a :class:`FoldParallelReporter` installed.
Each epoch the reporters gather all folds' metrics over torch.distributed and report
one pooled inner-validation NRMSE (exact, from per-fold error sums) for ASHA to act on.
With the report goes a checkpoint: each fold's leader adds its training state to the
same Ray checkpoint, which Ray registers only once every worker has reported it. So a
lost worker's trial restarts with all folds at the same report, and ``train_func``
resumes each fold from its last epoch.

Every worker must report the same number of times: folds that stop early keep
reporting their last metrics (and re-send their final state) until ``max_epochs``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from eegtune.distributed.fold_pooling import VAL_METRIC, aggregate_epoch, final_report
from eegtune.training.training_state import TrainingState, load_state, save_state

__all__ = ["VAL_METRIC", "FoldParallelReporter", "aggregate_epoch"]


class FoldParallelReporter:
    """One fold worker's reporter: gathers, pools, checkpoints, and restores."""

    def __init__(self, max_epochs: int, fold: int, workers_per_fold: int = 1, leader: bool = True):
        import ray.train

        self.max_epochs = max_epochs
        self.fold = fold
        self.workers_per_fold = workers_per_fold
        # A fold's replicas hold identical weights, so only its first worker saves them.
        self.leader = leader
        self.epochs_reported = 0
        self.last: dict[str, Any] | None = None
        self.best: dict[str, Any] | None = None  # the epoch train_func will keep
        self.final: dict[str, Any] | None = None
        self.first_report_at: float | None = None  # wall clock of this run's first report
        self._dir = Path(tempfile.mkdtemp(prefix=f"eegtune-fold{fold}-"))
        self._has_state = False
        self._restore(ray.train.get_checkpoint())

    @property
    def _state_file(self) -> Path:
        return self._dir / f"fold{self.fold}.pt"

    @property
    def _meta_file(self) -> Path:
        return self._dir / f"fold{self.fold}.json"

    def _restore(self, checkpoint) -> None:
        if checkpoint is None:
            return
        with checkpoint.as_directory() as folder:
            meta = Path(folder) / self._meta_file.name
            if not meta.exists():
                raise RuntimeError(
                    f"{checkpoint.path}: checkpoint has no state for fold {self.fold}"
                )
            saved = json.loads(meta.read_text())
            self.epochs_reported, self.last, self.best = (
                saved["reports"],
                saved["last"],
                saved["best"],
            )
            state = Path(folder) / self._state_file.name
            if state.exists():
                shutil.copyfile(state, self._state_file)
                shutil.copyfile(meta, self._meta_file)
                self._has_state = True

    def restore_state(self, fingerprint: str) -> TrainingState | None:
        if not self._has_state:
            return None
        state = load_state(self._state_file, fingerprint)
        if state is None:
            # Starting this fold over while the others resume would desynchronise the
            # folds' reports (and hang their collectives): refuse instead.
            raise RuntimeError(
                f"fold {self.fold}: the trial's checkpoint holds a state for another "
                f"configuration or store; it cannot be resumed"
            )
        return state

    def _gather(self, item: Any) -> list[Any]:
        import torch.distributed as dist

        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, item)
        _check_replicas_agree(out, self.workers_per_fold)
        return out[:: self.workers_per_fold]  # one entry per fold: its leader's

    def _report_epoch(self, metrics: dict[str, Any]) -> None:
        if self.first_report_at is None:
            self.first_report_at = time.time()
        pooled = aggregate_epoch(self._gather(metrics))
        self.epochs_reported += 1
        self._send(pooled)

    def _send(self, pooled: dict[str, Any]) -> None:
        """Report with this fold's latest state; Ray merges all folds' into one checkpoint."""
        import ray.train

        checkpoint = None
        if self.leader and self._has_state:
            saved = {"reports": self.epochs_reported, "last": self.last, "best": self.best}
            self._meta_file.write_text(json.dumps(saved))
            checkpoint = ray.train.Checkpoint.from_directory(str(self._dir))
        # The folder is re-sent by later reports, so Ray must not delete it.
        ray.train.report(pooled, checkpoint=checkpoint, delete_local_checkpoint_after_upload=False)

    def report(
        self,
        metrics: dict[str, Any],
        checkpoint_dir: Path | None = None,
        state: TrainingState | None = None,
    ) -> None:
        if metrics.get("done"):
            self.final = metrics
            return
        if "inner_val_n" not in metrics:  # nothing to pool: not an epoch report
            return
        self.last = metrics
        if self.best is None or metrics["inner_val_rmse"] < self.best["inner_val_rmse"]:
            self.best = metrics
        if state is not None and self.leader:
            save_state(state, self._state_file)
            self._has_state = True
        self._report_epoch(metrics)

    def finish(self, oof_dir: str | Path) -> None:
        """Pad the epochs of an early-stopped fold, then report the pooled OOF result."""
        while self.last is not None and self.epochs_reported < self.max_epochs:
            self._report_epoch({**self.last, "stopped": True, "epoch_seconds": 0.0})
        finals = self._gather(self.final)
        bests = self._gather(self.best)
        # With a checkpoint, so it is also what Ray Train's Result.metrics holds.
        self._send(final_report(bests, finals, oof_dir, self.max_epochs))
        shutil.rmtree(self._dir, ignore_errors=True)


def _check_replicas_agree(gathered: list[Any], workers_per_fold: int) -> None:
    """A fold's replicas must evaluate identical weights: if their validation differs
    (say, nodes whose float kernels differ), their early stopping could diverge and hang
    the collectives. Every rank sees the same list, so every rank raises together."""
    if workers_per_fold == 1:
        return
    for start in range(0, len(gathered), workers_per_fold):
        fold = gathered[start : start + workers_per_fold]
        if not all(isinstance(m, dict) for m in fold):
            continue
        key = [(m.get("epoch"), m.get("inner_val_rmse"), m.get("stopped")) for m in fold]
        if any(k != key[0] for k in key):
            raise RuntimeError(
                f"the replicas of fold {start // workers_per_fold} disagree: {key}; "
                f"data-parallel folds need replicas on identical hardware"
            )

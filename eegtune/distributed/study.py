"""An experiment's durable record: its Optuna study in a journal file, and the results
table read back from the study and the folds' out-of-fold files.

The study outlives any one ``eegtune tune`` run (Ray's own searcher state does not
survive ``Tuner.restore``, ray#30861), so a ``--resume`` and the results table read it
from here.

With ``--storage-path s3://…`` the journal is kept on the driver's disk while the search
runs (Optuna's journal needs a file it can lock and append to) and copied to the
storage URI after every trial (:class:`JournalSync`); a ``--resume`` on a fresh machine
that sees only the URI first copies it back (:func:`pull_journal`). Losing the head node
loses at most the trial that was finishing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from eegtune import storage
from eegtune.distributed.fold_reporter import VAL_METRIC

if TYPE_CHECKING:
    from eegtune.distributed.tune import TuneJob

JOURNAL = "optuna_journal.log"
JOB_RECORD = "tune_job.json"
TRIAL_ID_ATTR = "tune_trial_id"  # Optuna user attribute: the trial's folder under folds/
# Where the experiment's record lives on the driver; with a URI storage path, copied both ways.
SYNCED = (JOURNAL, JOB_RECORD)


def _study(job: TuneJob):
    import optuna

    backend = optuna.storages.journal.JournalFileBackend(str(job.experiment_dir / JOURNAL))
    return optuna.storages.JournalStorage(backend)


def finished_trials(job: TuneJob) -> int:
    """Trials the durable study has completed (0 for a new experiment)."""
    import optuna

    if not (job.experiment_dir / JOURNAL).exists():
        return 0
    try:
        study = optuna.load_study(study_name=job.name, storage=_study(job))
    except KeyError:
        return 0
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def _close_interrupted(job: TuneJob) -> None:
    """A driver killed mid-trial leaves trials RUNNING in the journal; mark them failed so
    TPE does not wait on them and the count of finished trials stays true."""
    import optuna

    if not (job.experiment_dir / JOURNAL).exists():
        return
    try:
        study = optuna.load_study(study_name=job.name, storage=_study(job))
    except KeyError:
        return
    for t in study.trials:
        if t.state == optuna.trial.TrialState.RUNNING:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)


def results_table(job: TuneJob) -> pd.DataFrame:
    """Every trial of the experiment from the durable study and the fold outputs."""
    import optuna

    study = optuna.load_study(study_name=job.name, storage=_study(job))
    rows = []
    for t in study.trials:
        oof = _oof_of(job, t.user_attrs.get(TRIAL_ID_ATTR))
        status = t.state.name
        if status == "COMPLETE" and oof["oof_nrmse"] is None:
            status = "STOPPED"  # ended by ASHA before its folds wrote their predictions
        rows.append({"trial": t.number, "status": status, VAL_METRIC: t.value, **t.params, **oof})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values(VAL_METRIC, na_position="last").reset_index(drop=True)


def _oof_of(job: TuneJob, trial_id: str | None) -> dict[str, Any]:
    """Pooled and per-fold OOF NRMSE of a trial that finished all its folds."""
    from eegtune.metrics import nrmse
    from eegtune.training.train_func import OOF

    empty = {"oof_nrmse": None, "fold_oof_nrmse": None, "trial_dir": None}
    if trial_id is None:
        return empty
    trial_dir = storage.join(job.experiment_uri, "folds", trial_id)
    files = [storage.join(trial_dir, f"fold{k}", OOF) for k in range(job.n_folds)]
    if not all(storage.exists(f) for f in files):
        return {**empty, "trial_dir": trial_dir}
    oof = pd.concat([storage.read_parquet(f) for f in files], ignore_index=True)
    per_fold = [
        nrmse(g["target"], g["prediction"]) if g["target"].nunique() > 1 else float("nan")
        for _, g in oof.groupby("fold")
    ]
    return {
        "oof_nrmse": nrmse(oof["target"], oof["prediction"]),
        "fold_oof_nrmse": [round(x, 4) for x in per_fold],
        "trial_dir": trial_dir,
    }


def pull_journal(job: TuneJob) -> None:
    """Copy the experiment's record from its storage URI to this machine (the URI is the
    truth: a driver on another machine may have continued the search)."""
    if not storage.is_remote(job.experiment_uri):
        return
    for name in SYNCED:
        source, local = storage.join(job.experiment_uri, name), job.experiment_dir / name
        if storage.exists(source):
            storage.write_bytes(local, storage.read_bytes(source))
        else:  # a copy left by an experiment since deleted from the URI
            local.unlink(missing_ok=True)


def push_journal(job: TuneJob) -> None:
    """Copy the experiment's record from this machine to its storage URI."""
    if not storage.is_remote(job.experiment_uri):
        return
    for name in SYNCED:
        local = job.experiment_dir / name
        if local.exists():
            storage.write_bytes(storage.join(job.experiment_uri, name), local.read_bytes())


def journal_sync(job: TuneJob):
    """A Ray Tune callback that pushes the journal once a trial's result is in it (Tune
    tells the searcher before its callbacks)."""
    from ray.tune import Callback

    class JournalSync(Callback):
        def __init__(self) -> None:
            self._pushed: tuple[int, int] | None = None

        def _push(self) -> None:
            path = job.experiment_dir / JOURNAL
            if not path.exists():
                return
            stat = path.stat()
            if (stat.st_size, stat.st_mtime_ns) != self._pushed:
                push_journal(job)
                self._pushed = (stat.st_size, stat.st_mtime_ns)

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self._push()

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._push()

        def on_experiment_end(self, trials, **info) -> None:
            self._push()

    return JournalSync()

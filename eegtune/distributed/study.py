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

import json
from typing import Any

import pandas as pd

from eegtune import storage
from eegtune.distributed.experiment import JOURNAL, SYNCED, TUNE_RESULTS, Experiment
from eegtune.distributed.fold_pooling import VAL_METRIC
from eegtune.distributed.fold_race import read_verdict
from eegtune.training.run_files import read_oof_scores

TRIAL_ID_ATTR = "tune_trial_id"  # Optuna user attribute: the trial's folder under folds/


def study_storage(exp: Experiment):
    """The experiment's Optuna storage: its journal file on this machine."""
    import optuna

    backend = optuna.storages.journal.JournalFileBackend(str(exp.path / JOURNAL))
    return optuna.storages.JournalStorage(backend)


def load_study(exp: Experiment):
    """The experiment's Optuna study; None for a new experiment."""
    import optuna

    if not (exp.path / JOURNAL).exists():
        return None
    try:
        return optuna.load_study(study_name=exp.name, storage=study_storage(exp))
    except KeyError:
        return None


def finished_trials(exp: Experiment) -> int:
    """Trials the durable study has completed (0 for a new experiment)."""
    import optuna

    study = load_study(exp)
    if study is None:
        return 0
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def points_not_tried(exp: Experiment, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``points`` the study holds no trial of yet, finished, running or waiting (an
    interrupted run leaves its queued points waiting in the journal, and the searcher
    runs those first). A failed trial of a point, an interrupted one included, does not
    count: the point runs again."""
    import optuna

    study = load_study(exp)
    held = [
        t
        for t in (study.trials if study is not None else [])
        if t.state != optuna.trial.TrialState.FAIL
    ]
    return [
        p
        for p in points
        if not any(t.params == p or t.system_attrs.get("fixed_params") == p for t in held)
    ]


def close_interrupted(exp: Experiment) -> None:
    """A driver killed mid-trial leaves trials RUNNING in the journal; mark them failed so
    TPE does not wait on them and the count of finished trials stays true."""
    import optuna

    study = load_study(exp)
    for t in study.trials if study is not None else []:
        if t.state == optuna.trial.TrialState.RUNNING:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)


def results_table(exp: Experiment, study: Any = None) -> pd.DataFrame:
    """Every trial of the experiment from the durable study and each trial's saved
    out-of-fold figures (:mod:`eegtune.training.run_files`); best first."""
    study = study if study is not None else load_study(exp)
    rows = []
    for t in study.trials if study is not None else []:
        trial_id = t.user_attrs.get(TRIAL_ID_ATTR)
        oof = _oof_of(exp, trial_id)
        status, stopped_by = t.state.name, ""
        if status == "COMPLETE" and oof["oof_nrmse"] is None:
            # Ended by ASHA or by the fold race before its folds wrote their predictions.
            status = "STOPPED"
            verdict = read_verdict(exp.trial_uri(trial_id)) if trial_id else None
            stopped_by = f"race ({verdict['reason']})" if verdict else "asha"
        rows.append(
            {
                "trial": t.number,
                "status": status,
                VAL_METRIC: t.value,
                **t.params,
                **oof,
                "stopped_by": stopped_by,
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values(VAL_METRIC, na_position="last").reset_index(drop=True)


def _oof_of(exp: Experiment, trial_id: str | None) -> dict[str, Any]:
    if trial_id is None:
        return {"oof_nrmse": None, "fold_oof_nrmse": None, "trial_dir": None}
    scores = read_oof_scores(exp.trial_uri(trial_id), exp.n_folds) or {}
    return {
        "oof_nrmse": scores.get("oof_nrmse"),
        # Four places, as the table prints them; the saved scores keep every digit.
        "fold_oof_nrmse": ([round(x, 4) for x in scores["fold_oof_nrmse"]] if scores else None),
        "trial_dir": str(exp.trial_dir(trial_id)),
    }


def fold_epochs_spent(exp: Experiment) -> dict[str, int]:
    """Per Tune trial id: the fold-epochs its folds trained, the largest ``fold_epochs``
    its reports carry. The fold pool counts every fold's epochs: those of a trial racing
    stopped on its first folds, and those a fold ran past its trial's last pooled report
    before ASHA stopped it. Trials whose reports carry no count (data-parallel folds) are
    left out. A trial Tune retried counts its last driver's folds (the new driver counts
    afresh, and its folds resume from their saved epochs)."""
    spent: dict[str, int] = {}
    for path in sorted(exp.path.glob(TUNE_RESULTS)):
        for line in path.read_text().splitlines():
            try:
                report = json.loads(line)
            except ValueError:
                continue  # a line cut short by an interrupted run
            if "fold_epochs" in report and "trial_id" in report:
                trial = str(report["trial_id"])
                spent[trial] = max(spent.get(trial, 0), int(report["fold_epochs"]))
    return spent


def pull_journal(exp: Experiment) -> None:
    """Copy the experiment's record from its storage URI to this machine (the URI is the
    truth: a driver on another machine may have continued the search)."""
    if exp.source is None:
        return
    for name in SYNCED:
        source, local = storage.join(exp.uri, name), exp.path / name
        if storage.exists(source):
            storage.write_bytes(local, storage.read_bytes(source))
        else:  # a copy left by an experiment since deleted from the URI
            local.unlink(missing_ok=True)


def push_journal(exp: Experiment) -> None:
    """Copy the experiment's record from this machine to its storage URI."""
    if exp.source is None:
        return
    for name in SYNCED:
        local = exp.path / name
        if local.exists():
            storage.write_bytes(storage.join(exp.uri, name), local.read_bytes())


def journal_sync(exp: Experiment):
    """A Ray Tune callback that pushes the journal once a trial's result is in it (Tune
    tells the searcher before its callbacks)."""
    from ray.tune import Callback

    class JournalSync(Callback):
        def __init__(self) -> None:
            self._pushed: tuple[int, int] | None = None

        def _push(self) -> None:
            path = exp.path / JOURNAL
            if not path.exists():
                return
            stat = path.stat()
            if (stat.st_size, stat.st_mtime_ns) != self._pushed:
                push_journal(exp)
                self._pushed = (stat.st_size, stat.st_mtime_ns)

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self._push()

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._push()

        def on_experiment_end(self, trials, **info) -> None:
            self._push()

    return JournalSync()

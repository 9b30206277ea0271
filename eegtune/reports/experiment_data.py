"""What a report reads from one finished experiment: its record, its Optuna study, the
results table and the top trials' out-of-fold rows.

Nothing here trains or writes: an experiment folder (or a storage URI, mirrored first)
is read as ``eegtune tune`` left it. A trial that ASHA stopped has no out-of-fold rows;
it is listed and never plotted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eegtune.distributed.experiment import Experiment
from eegtune.distributed.fold_pooling import VAL_METRIC
from eegtune.distributed.study import (
    TRIAL_ID_ATTR,
    fold_epochs_spent,
    load_study,
    results_table,
)
from eegtune.ensembles.candidates import open_experiment
from eegtune.ensembles.errors import EnsembleError
from eegtune.ensembles.nested import OOFRows, nested_mean_predictor
from eegtune.metrics import nrmse, nrmse_or_nan
from eegtune.training.run_files import oof_frame


@dataclass
class ExperimentData:
    experiment: Experiment  # its record: settings, folder or URI
    study: Any  # optuna.Study
    table: pd.DataFrame  # results_table: one row per trial, best first
    trials: pd.DataFrame  # number, status, value, seconds, epochs, fold_epochs, finished
    oof: dict[int, pd.DataFrame] = field(default_factory=dict)  # top COMPLETE trials' rows
    mean_predictor: dict[str, Any] | None = None  # pooled and per-fold NRMSE, same folds

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def location(self) -> str:
        return self.experiment.uri

    @property
    def settings(self) -> dict[str, Any]:  # tune_job.json
        return self.experiment.settings

    @property
    def challenge(self) -> int:
        return self.experiment.challenge

    @property
    def n_folds(self) -> int:
        return self.experiment.n_folds

    @property
    def params(self) -> list[str]:
        known = {
            "trial", "status", VAL_METRIC, "oof_nrmse", "fold_oof_nrmse", "trial_dir",
            "stopped_by",
        }  # fmt: skip
        return [c for c in self.table.columns if c not in known]

    @property
    def complete(self) -> pd.DataFrame:
        """Trials with out-of-fold predictions, best inner-validation NRMSE first."""
        if self.table.empty:
            return self.table
        return self.table[self.table["status"] == "COMPLETE"]


def load_experiment(location: str | Path, top: int = 5) -> ExperimentData:
    """The experiment at ``location``; the out-of-fold rows of its ``top`` best trials."""
    exp = open_experiment(location)
    study = load_study(exp)
    if study is None:
        raise EnsembleError(f"{exp.path}: its journal holds no study named {exp.name!r}")
    table = results_table(exp, study)
    data = ExperimentData(
        experiment=exp,
        study=study,
        table=table,
        trials=_trial_frame(study, exp.max_epochs, exp.n_folds, fold_epochs_spent(exp)),
    )
    for _, row in data.complete.head(top).iterrows():
        data.oof[int(row["trial"])] = oof_frame(row["trial_dir"], exp.n_folds)
    if data.oof:
        data.mean_predictor = mean_predictor_scores(next(iter(data.oof.values())))
    return data


def _trial_frame(
    study, max_epochs: int, n_folds: int, spent: dict[str, int] | None = None
) -> pd.DataFrame:
    """Per Optuna trial: state, objective, wall seconds, the epochs it reported and the
    fold-epochs it trained.

    Tune reports every epoch and, for a trial that finished, one final result after them:
    the epochs are the reports up to ``max_epochs``. The fold-epochs are the fold pool's
    own count (``spent``, by Tune trial id) where the trial's reports carry one, else
    epochs × folds (data-parallel folds train every fold to each reported epoch).
    """
    spent = spent or {}
    rows = []
    for t in study.trials:
        start, end = t.datetime_start, t.datetime_complete
        epochs = min(len(t.intermediate_values), max_epochs)
        fold_epochs = spent.get(str(t.user_attrs.get(TRIAL_ID_ATTR)), epochs * n_folds)
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "started": start,
                "finished": end,
                "seconds": (end - start).total_seconds() if start and end else np.nan,
                "epochs": epochs,
                "fold_epochs": fold_epochs,
            }
        )
    return pd.DataFrame(rows)


def mean_predictor_scores(oof: pd.DataFrame) -> dict[str, Any]:
    """The mean predictor on the experiment's own folds: each outer fold predicted by the
    window-weighted mean target of the other folds' rows, which are exactly its training
    subjects' windows."""
    rows = OOFRows(
        preds=np.zeros((len(oof), 1), np.float32),
        target=oof["target"].to_numpy(np.float64),
        fold=oof["fold"].to_numpy(),
        subject=oof["subject"].to_numpy(),
    )
    pred = nested_mean_predictor(rows)
    per_fold = [
        nrmse_or_nan(rows.target[rows.fold == f], pred[rows.fold == f])
        for f in sorted(np.unique(rows.fold))
    ]
    return {"oof_nrmse": nrmse(rows.target, pred), "fold_oof_nrmse": per_fold}


def wall_seconds(trials: pd.DataFrame) -> float:
    """From the first trial's start to the last trial's end (resumes included)."""
    done = trials.dropna(subset=["started", "finished"])
    if done.empty:
        return float("nan")
    return (done["finished"].max() - done["started"].min()).total_seconds()

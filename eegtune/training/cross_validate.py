"""``eegtune cv``: every fold of one configuration, in this process, pooled.

The pooled out-of-fold NRMSE (every subject predicted once, by the fold that held it
out) is the number the search and the ensemble rely on. Beside it: the same figure for
the mean predictor (each fold predicts its training subjects' mean), so "better than
the mean" is visible at a glance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eegtune import storage
from eegtune.errors import ConfigError
from eegtune.metrics import nrmse, nrmse_or_nan
from eegtune.training.config import FoldJob, TrainConfig, make_config
from eegtune.training.data_modes import choose_cv_mode
from eegtune.training.fold_data import InMemoryFoldSource, using_fold_source
from eegtune.training.fold_stream import StreamingFoldSource
from eegtune.training.folds import audit_folds, make_folds, store_subjects
from eegtune.training.reporting import LocalReporter, reporting_to
from eegtune.training.train_func import oof_frame, train_func
from eegtune.training.training_state import STATE_FILE


@dataclass
class CVResult:
    run_dir: Path
    folds: list[dict[str, Any]]
    oof: pd.DataFrame
    pooled_nrmse: float
    mean_baseline_nrmse: float
    data_mode: str = "memory"
    data_note: str = ""

    def table(self) -> str:
        lines = ["fold  test subj  test win  best epoch  inner-val RMSE  OOF NRMSE  mean NRMSE"]
        for f in self.folds:
            oof = "n/a" if f["oof_nrmse"] is None else f"{f['oof_nrmse']:.4f}"
            lines.append(
                f"{f['fold']:>4}  {len(f['subjects']['test']):>9}  {f['n_test_windows']:>8}  "
                f"{f['best_epoch']:>10}  {f['inner_val_rmse']:>14.4f}  {oof:>9}  "
                f"{f['mean_baseline_nrmse']:>10.4f}"
            )
        lines.append(
            f"pooled OOF NRMSE {self.pooled_nrmse:.4f}   "
            f"mean predictor {self.mean_baseline_nrmse:.4f}"
            f"   ({len(self.oof)} windows, {self.oof['subject'].nunique()} subjects)"
        )
        return "\n".join(lines)


def mean_baseline_predictions(oof: pd.DataFrame, store_table: pd.DataFrame, folds) -> np.ndarray:
    """Each fold predicts the window-weighted mean target of its training subjects."""
    weights = store_table.set_index("subject")
    pred = np.full(len(oof), np.nan)
    for fold in folds:
        train = weights.loc[list(fold.train)]
        mean = float((train["target"] * train["n_windows"]).sum() / train["n_windows"].sum())
        pred[(oof["fold"] == fold.index).to_numpy()] = mean
    if np.isnan(pred).any():
        raise ConfigError("out-of-fold rows from a fold that is not part of this split")
    return pred


def run_cv(
    store: str | Path,
    challenge: int,
    hp: TrainConfig,
    run_dir: str | Path,
    n_folds: int = 5,
    split: str = "kfold",
    on_report=None,
    data_mode: str = "memory",
    device: str = "auto",
    precision: str = "32",
) -> CVResult:
    """Every fold of ``hp`` in this process; ``data_mode`` memory, stream or auto (see
    :mod:`eegtune.training.data_modes`); ``device`` and ``precision`` as in
    :class:`FoldJob`."""
    mode, note = choose_cv_mode(data_mode, store, challenge)
    source = StreamingFoldSource if mode == "stream" else InMemoryFoldSource
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    subjects = store_subjects(store, challenge)
    folds = make_folds(subjects, split, n_folds, hp.seed)
    problems = audit_folds(folds, subjects["subject"].tolist())
    if problems:
        raise RuntimeError("the split leaks: " + "; ".join(problems))
    job = FoldJob(
        store=str(store),
        challenge=challenge,
        out_dir=str(run_dir),
        n_folds=len(folds),
        split=split,
        device=device,
        precision=precision,
    )
    results = []
    for fold in folds:
        # Each epoch's state is kept beside the fold's outputs, so a rerun resumes there.
        state_path = run_dir / f"fold{fold.index}" / STATE_FILE
        with (
            reporting_to(LocalReporter(on_report, state_path=state_path)),
            using_fold_source(source),
        ):
            results.append(train_func(make_config(replace(job, fold=fold.index), hp)))
    oof = oof_frame(run_dir, len(folds))
    base = mean_baseline_predictions(oof, subjects, folds)
    for r in results:
        mask = (oof["fold"] == r["fold"]).to_numpy()
        y = oof.loc[mask, "target"].to_numpy()
        r["mean_baseline_nrmse"] = nrmse_or_nan(y, base[mask])
    result = CVResult(
        run_dir=run_dir,
        folds=results,
        oof=oof,
        pooled_nrmse=nrmse(oof["target"], oof["prediction"]),
        mean_baseline_nrmse=nrmse(oof["target"], base),
        data_mode=mode,
        data_note=note,
    )
    summary = {
        "challenge": challenge,
        "split": split,
        "data_mode": mode,
        "config": hp.to_flat(),
        "pooled_oof_nrmse": result.pooled_nrmse,
        "mean_baseline_nrmse": result.mean_baseline_nrmse,
        "folds": [{k: v for k, v in r.items() if k != "subjects"} for r in results],
    }
    storage.write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    return result

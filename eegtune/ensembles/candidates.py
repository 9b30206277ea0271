"""An ensemble's candidates: the COMPLETE trials of one or more finished experiments.

A **member** of an ensemble is a trial, not a fold model: on new data it predicts the mean
of its K fold models (K-fold bagging), and its OOF vector (each subject predicted by the
one fold model that never saw it) is what the combiners are fitted on. Experiments can
only be pooled when their OOF rows are the same rows in the same folds: same store, same
challenge, same K and split seed.

A **seed bag** is a member too: one trial trained with several seeds on the same folds
(``parts``, one run per seed), predicting the mean of every run's K fold models. Its OOF
vector is the mean of its runs' OOF vectors, so each row is still predicted only by
models that never saw its subject.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eegtune.distributed.experiment import Experiment
from eegtune.distributed.study import results_table
from eegtune.ensembles.errors import EnsembleError
from eegtune.ensembles.nested import OOFRows
from eegtune.errors import ExperimentError
from eegtune.training.run_files import CHECKPOINT, fold_dir, oof_frame

ROW_KEY = ["subject", "recording", "window_index"]
SAME_FOLDS = ("challenge", "n_folds", "seed")  # what makes two experiments' folds the same


@dataclass(frozen=True)
class Candidate:
    """One trial's fold models, as one member: ``trial_dir/fold{k}/checkpoint.pt``; or a
    seed bag, whose ``parts`` are the trial's runs (one per seed, the trial's own first)."""

    experiment: str
    trial: int
    seed: int
    trial_dir: Path
    n_folds: int
    oof_nrmse: float
    params: dict[str, Any]
    parts: tuple[Candidate, ...] = ()

    @property
    def label(self) -> str:
        if self.parts:
            seeds = "+".join(str(p.seed) for p in self.parts)
            return f"{self.experiment}/trial {self.trial} seeds {seeds}"
        return f"{self.experiment}/trial {self.trial} seed {self.seed}"

    def runs(self) -> tuple[Candidate, ...]:
        """The single-seed runs this member averages: its parts, or itself."""
        return self.parts or (self,)

    def checkpoints(self) -> list[Path]:
        """Every fold model the member averages: K per run."""
        files = [
            Path(fold_dir(run.trial_dir, k)) / CHECKPOINT
            for run in self.runs()
            for k in range(run.n_folds)
        ]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise EnsembleError(f"{self.label}: missing fold checkpoint(s) {missing}")
        return files

    def oof(self) -> pd.DataFrame:
        if self.parts:
            return _mean_oof(self.label, [run.oof() for run in self.parts])
        try:
            frame = oof_frame(self.trial_dir, self.n_folds)
        except FileNotFoundError as exc:
            raise EnsembleError(f"{self.label}: {exc}") from exc
        except Exception as exc:
            raise EnsembleError(f"{self.label}: cannot read its OOF files: {exc}") from exc
        return frame.sort_values(ROW_KEY, kind="stable").reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it would leave the parts' folders as Paths, not JSON.
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {
            **fields,
            "trial_dir": str(self.trial_dir),
            "parts": [run.to_dict() for run in self.parts],
        }


def _mean_oof(label: str, frames: list[pd.DataFrame]) -> pd.DataFrame:
    """A seed bag's OOF rows: its runs' predictions averaged row by row, refused unless
    every run predicted the same windows from the same folds."""
    first = frames[0]
    for frame in frames[1:]:
        if not same_rows(frame, first):
            raise EnsembleError(
                f"{label}: its seed runs have different out-of-fold rows; they were not "
                f"trained on the same folds"
            )
    mean = np.mean([f["prediction"].to_numpy(dtype=np.float64) for f in frames], axis=0)
    return first.assign(prediction=mean.astype(first["prediction"].dtype))


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two sorted OOF frames hold the same windows, each in the same fold."""
    return len(a) == len(b) and all(
        np.array_equal(a[k].to_numpy(), b[k].to_numpy()) for k in [*ROW_KEY, "fold"]
    )


def open_experiment(location: str | Path) -> Experiment:
    """An experiment folder, or one at a storage URI (mirrored here first)."""
    try:
        return Experiment.open(location)
    except ExperimentError as exc:
        raise EnsembleError(str(exc)) from exc


def check_same_folds(experiments: list[Experiment], challenge: int) -> None:
    """Refuse experiments whose OOF rows could not line up, naming the setting."""
    for exp in experiments:
        if int(exp.settings["challenge"]) != challenge:
            raise EnsembleError(
                f"{exp.path} is a Challenge {exp.settings['challenge']} experiment, "
                f"not Challenge {challenge}"
            )
    first = experiments[0]
    for exp in experiments[1:]:
        differ = [k for k in SAME_FOLDS if exp.settings[k] != first.settings[k]]
        if differ:
            detail = ", ".join(f"{k} {first.settings[k]!r} vs {exp.settings[k]!r}" for k in differ)
            raise EnsembleError(
                f"{first.path} and {exp.path} do not share their folds ({detail}): "
                f"their out-of-fold predictions are not comparable"
            )


def experiment_candidates(exp: Experiment) -> list[Candidate]:
    """The experiment's COMPLETE trials (STOPPED ones have no OOF predictions)."""
    table = results_table(exp)
    done = table[table["status"] == "COMPLETE"] if not table.empty else table
    if done.empty:
        raise EnsembleError(f"{exp.path} has no COMPLETE trial to build an ensemble from")
    skip = ("trial", "status", "trial_dir", "oof_nrmse", "stopped_by")
    return [
        Candidate(
            experiment=exp.name,
            trial=int(row["trial"]),
            seed=exp.seed,
            trial_dir=Path(row["trial_dir"]),
            n_folds=exp.n_folds,
            oof_nrmse=float(row["oof_nrmse"]),
            params={k: _plain(v) for k, v in row.items() if k not in skip},
        )
        for row in done.to_dict("records")
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def oof_rows(candidates: list[Candidate]) -> tuple[OOFRows, pd.DataFrame]:
    """The candidates' OOF predictions side by side, refusing any that cover other rows
    or put a row in another fold; also the rows' identities (subject, recording, …)."""
    ref_frame = candidates[0].oof()
    preds = np.empty((len(ref_frame), len(candidates)), dtype=np.float32)
    preds[:, 0] = ref_frame["prediction"].to_numpy()
    for m, cand in enumerate(candidates[1:], start=1):
        frame = cand.oof()
        if not same_rows(frame, ref_frame):
            raise EnsembleError(
                f"{cand.label} and {candidates[0].label} have different out-of-fold rows "
                f"({len(frame)} vs {len(ref_frame)} windows, or other folds): they were "
                f"not trained on the same store and folds"
            )
        preds[:, m] = frame["prediction"].to_numpy()
    rows = OOFRows(
        preds=preds,
        target=ref_frame["target"].to_numpy(dtype=np.float64),
        fold=ref_frame["fold"].to_numpy(),
        subject=ref_frame["subject"].astype(str).to_numpy(),
    )
    return rows, ref_frame[[*ROW_KEY, "release", "target", "fold"]]

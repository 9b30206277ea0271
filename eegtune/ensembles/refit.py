"""Fast members: a member's K fold models replaced by one model trained on every subject.

AutoGluon's ``refit_full``: the ensemble is chosen and scored on the fold models'
out-of-fold predictions, then each shipped member is trained once more, on all the
subjects its folds shared out between them, for the epochs its folds chose (the median of
their best epochs), on the same learning-rate schedule, with nothing held out. At
inference a member then costs one forward pass instead of K.

A refit model has no held-out rows of its own: the scores printed for a refit ensemble
are the fold models' nested out-of-fold scores, and say so. The refit model lands in the
member's run folder (``refit/checkpoint.pt``); a rerun reuses it, and one interrupted
mid-way resumes after the refit's last finished epoch (``refit/training_state.pt``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from eegtune import storage
from eegtune.distributed.experiment import Experiment
from eegtune.ensembles.candidates import Candidate
from eegtune.ensembles.errors import EnsembleError
from eegtune.training.run_files import CHECKPOINT, CONFIG, FOLD_METRICS, fold_dir

logger = logging.getLogger(__name__)


def chosen_epochs(run_dir: Path, n_folds: int) -> int:
    """The epochs a refit trains: the median over folds of the epochs each fold kept."""
    kept = []
    for k in range(n_folds):
        path = Path(fold_dir(run_dir, k)) / FOLD_METRICS
        if not path.exists():
            raise EnsembleError(f"{run_dir}: cannot refit, no {path}")
        kept.append(int(json.loads(path.read_text())["best_epoch"]) + 1)
    return max(1, int(round(float(np.median(kept)))))


def refit_member(
    cand: Candidate, exp: Experiment, log: Callable[[str], None] | None = None
) -> Path:
    """The member's refit model (trained here if it is not there yet)."""
    from eegtune.training.config import make_config, parse_config
    from eegtune.training.data_modes import choose_cv_mode
    from eegtune.training.fold_data import InMemoryFoldSource, using_fold_source
    from eegtune.training.fold_stream import StreamingFoldSource
    from eegtune.training.reporting import LocalReporter, reporting_to
    from eegtune.training.train_func import refit_dir, train_func
    from eegtune.training.training_state import STATE_FILE

    log = log or logger.info
    checkpoint = Path(refit_dir(cand.trial_dir)) / CHECKPOINT
    if checkpoint.exists():
        return checkpoint
    config_file = cand.trial_dir / CONFIG
    if not config_file.exists():
        raise EnsembleError(f"{cand.label}: cannot refit, no {config_file}")
    epochs = chosen_epochs(cand.trial_dir, cand.n_folds)
    job, hp = parse_config(
        {
            "decay_norms_and_biases": True,  # a config from before this setting existed
            **json.loads(config_file.read_text()),
            "store": exp.store,
            "out_dir": str(cand.trial_dir),
            "fold": 0,
            "refit_epochs": epochs,
            # Every subject of the split trains, whichever fold's file names them.
            "split_file": exp.split_uri if storage.exists(exp.split_uri) else None,
            "split_seed": exp.seed,
            "device": "auto",
        }
    )
    mode, _ = choose_cv_mode("auto", job.store, job.challenge)
    log(f"refit {cand.label}: {epochs} epoch(s) on every subject ({mode} mode)")
    source = StreamingFoldSource if mode == "stream" else InMemoryFoldSource
    # Each epoch's state beside the refit model: an interrupted refit resumes there.
    state = Path(refit_dir(cand.trial_dir)) / STATE_FILE
    with reporting_to(LocalReporter(state_path=state)), using_fold_source(source):
        train_func(make_config(job, hp))
    if not checkpoint.exists():
        raise EnsembleError(f"{cand.label}: the refit ended without {checkpoint}")
    state.unlink(missing_ok=True)  # the model is saved: nothing left to resume
    return checkpoint

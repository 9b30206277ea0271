"""Training: where a fold is trained (``train_func``), drawn (``folds``) and pooled
(``cross_validate``).

``train_func(config)`` is a pure function of a flat config dict; it runs unchanged
in-process (``eegtune cv``), under Ray Train and under Ray Tune.
"""

from eegtune.training.config import FoldJob, TrainConfig, make_config
from eegtune.training.cross_validate import CVResult, run_cv
from eegtune.training.folds import Fold, audit_folds, inner_split, make_folds, store_subjects
from eegtune.training.reporting import LocalReporter, report, reporting_to
from eegtune.training.train_func import load_checkpoint, train_func
from eegtune.training.training_state import TrainingState

__all__ = [
    "CVResult",
    "Fold",
    "FoldJob",
    "LocalReporter",
    "TrainConfig",
    "TrainingState",
    "audit_folds",
    "inner_split",
    "load_checkpoint",
    "make_config",
    "make_folds",
    "report",
    "reporting_to",
    "run_cv",
    "store_subjects",
    "train_func",
]

"""Ensembles of the top trials' fold models: one predictor per challenge.

>>> from eegtune.ensembles import EnsembleRequest, build_ensemble, load_ensemble
>>> result = build_ensemble(EnsembleRequest(("tune_runs/c1",), challenge=1, out="ens_c1"))
>>> model = load_ensemble("ens_c1")  # raw (B, 129, 200) float32 -> (B, 1)

Modules: :mod:`.candidates` (experiments, trials, OOF rows), :mod:`.combiners` (where an
ensemble is weighted), :mod:`.nested` (the honest score and the guard), :mod:`.finalists`
(multi-seed retraining), :mod:`.predictor` (the ``nn.Module`` and its folder),
:mod:`.build` (the ``eegtune ensemble`` pipeline).
"""

from eegtune.ensembles.build import EnsembleRequest, EnsembleResult, build_ensemble, format_report
from eegtune.ensembles.combiners import METHODS, Combination, FitStats, fit_combination
from eegtune.ensembles.errors import EnsembleError
from eegtune.ensembles.predictor import EnsemblePredictor, load_ensemble, read_description

__all__ = [
    "METHODS",
    "Combination",
    "EnsembleError",
    "EnsemblePredictor",
    "EnsembleRequest",
    "EnsembleResult",
    "FitStats",
    "build_ensemble",
    "fit_combination",
    "format_report",
    "load_ensemble",
    "read_description",
]

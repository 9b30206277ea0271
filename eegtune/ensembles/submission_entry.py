"""EEG 2025 challenge submission, exported by ``eegtune submission``.

This file is the zip's ``submission.py``; eegtune never imports it. It and the ``sub_*``
modules beside it import only torch, numpy and the standard library: the model code is
eegtune's own, copied into the zip at export time with its imports renamed.

``weights_challenge_{1,2}.pt`` each hold one ensemble as plain containers and tensors
(no pickled classes): its members' fold models (config and state_dict), the members'
weights, the shrinkage α and the centre c.

Input: X is float32 **volts**, shape (B, 129, 200) at 100 Hz, exactly what the scorer
passes (MNE's values for the BDF recordings, never rescaled). Each model multiplies X by
1e6 once, because its members were trained on µV, and predicts
``c + α · (Σ weight · mean over folds(fold model(µV)) − c)`` as (B, 1). The factor is
fixed: nothing here guesses the unit from the data's magnitude.

Batches of at most ``FAST_SMALL_BATCHES`` windows (the scorer's are of one) take the
ensemble's fast route, the same models' arithmetic with fewer calls into PyTorch (see
``sub_ensemble_module``); 0 would send every batch through the models one by one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the sub_* modules travel beside this file
    sys.path.insert(0, str(HERE))

import sub_zoo  # noqa: E402, F401  (registers the architectures this zip uses)
from sub_ensemble_module import SMALL_BATCH, EnsemblePredictor, FromVolts, TrialBag  # noqa: E402
from sub_registry import model_from_config  # noqa: E402

SFREQ_EXPECTED = 100
FAST_SMALL_BATCHES = SMALL_BATCH
# Where the scorer may have unpacked the files, in the order the challenge gives.
SEARCH = (Path("/app/input/res"), Path("/app/input"), Path.cwd(), HERE)


def find_file(name: str) -> Path:
    for folder in SEARCH:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name} not found in any of {[str(f) for f in SEARCH]}")


def build_ensemble(blob: dict, device: torch.device) -> FromVolts:
    bags = []
    for member in blob["members"]:
        folds = []
        for fold in member["folds"]:
            model = model_from_config(fold["config"])
            model.load_state_dict(fold["state_dict"])
            folds.append(model)
        bags.append(TrialBag(folds))
    weights = [float(m["weight"]) for m in blob["members"]]
    module = EnsemblePredictor(bags, weights, float(blob["alpha"]), float(blob["centre"]))
    module.fast_small_batches(FAST_SMALL_BATCHES)
    return FromVolts(module).to(device).eval()


class Submission:
    def __init__(self, SFREQ: float, DEVICE: str | torch.device) -> None:
        if int(round(float(SFREQ))) != SFREQ_EXPECTED:
            raise ValueError(f"these models take {SFREQ_EXPECTED} Hz windows, got SFREQ={SFREQ}")
        self.sfreq = SFREQ
        self.device = torch.device(DEVICE)

    def _model(self, challenge: int) -> torch.nn.Module:
        path = find_file(f"weights_challenge_{challenge}.pt")
        blob = torch.load(path, map_location=self.device, weights_only=True)
        return build_ensemble(blob, self.device)

    def get_model_challenge_1(self) -> torch.nn.Module:
        return self._model(1)

    def get_model_challenge_2(self) -> torch.nn.Module:
        return self._model(2)

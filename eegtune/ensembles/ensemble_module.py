"""The ensemble's modules: a trial's fold models averaged, the members weighted and shrunk,
and the zip's unit boundary.

Imports only torch: the submission zip carries this file as it is (see
:mod:`eegtune.ensembles.submission`), so it must never import eegtune.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# The store keeps µV, so every model was trained on µV; the scorer feeds MNE's volts.
MICROVOLTS_PER_VOLT = 1e6


class TrialBag(nn.Module):
    """One member: the mean of a trial's K fold models."""

    def __init__(self, folds: list[nn.Module]) -> None:
        super().__init__()
        self.folds = nn.ModuleList(folds)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([m(x) for m in self.folds]).mean(dim=0)


class EnsemblePredictor(nn.Module):
    """Raw µV (B, 129, 200) float32 in, (B, 1) out:
    ``centre + alpha · (Σ_m weight_m · member_m(x) − centre)``; no members predicts
    ``centre`` (the mean predictor)."""

    def __init__(self, members: list[TrialBag], weights: list[float], alpha: float, centre: float):
        super().__init__()
        if len(members) != len(weights):
            raise ValueError(f"{len(members)} members but {len(weights)} weights")
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))
        self.register_buffer("alpha", torch.tensor(float(alpha), dtype=torch.float32))
        self.register_buffer("centre", torch.tensor(float(centre), dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        if len(self.members) == 0:
            return self.centre.expand(x.shape[0], 1).clone()
        outs = torch.stack([m(x) for m in self.members], dim=-1)  # (B, 1, M)
        ens = (outs * self.weights).sum(dim=-1)
        return self.centre + self.alpha * (ens - self.centre)


class FromVolts(nn.Module):
    """The zip's model: the scorer's input, float32 **volts** (B, 129, 200) exactly as MNE
    returns a recording, converted once to the µV the ensemble was trained on; (B, 1) out.

    The factor is fixed, never inferred from the data's magnitude: a zip that guessed could
    treat a quiet recording in µV as volts, and a loud one the other way round.
    """

    def __init__(self, ensemble: EnsemblePredictor) -> None:
        super().__init__()
        self.ensemble = ensemble

    def forward(self, volts: Tensor) -> Tensor:
        return self.ensemble(volts * MICROVOLTS_PER_VOLT)

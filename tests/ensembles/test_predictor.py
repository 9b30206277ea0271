"""`load_ensemble` computes exactly what combining the members' fold models by hand does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eegtune.ensembles.candidates import experiment_candidates, open_experiment
from eegtune.ensembles.predictor import load_ensemble, write_ensemble
from eegtune.training.train_func import load_checkpoint

# The shared experiment fixture is built inside the first test that asks for it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_loaded_ensemble_equals_the_members_combined_by_hand(finished_experiment, tmp_path):
    cands = experiment_candidates(open_experiment(finished_experiment))[:2]
    weights, alpha, centre = [0.3, 0.7], 0.8, 1.5
    description = {
        "members": [{"label": c.label, "weight": w} for c, w in zip(cands, weights, strict=True)],
        "alpha": alpha,
        "centre": centre,
    }
    out = tmp_path / "ens"
    write_ensemble(out, description, [c.checkpoints() for c in cands])

    x = torch.randn(5, 129, 200, generator=torch.Generator().manual_seed(1)) * 20
    by_hand = np.zeros(5)
    for cand, w in zip(cands, weights, strict=True):
        folds = [load_checkpoint(f)[0] for f in cand.checkpoints()]
        with torch.no_grad():
            bag = np.mean([m(x).numpy()[:, 0].astype(np.float64) for m in folds], axis=0)
        by_hand += w * bag
    by_hand = centre + alpha * (by_hand - centre)

    model = load_ensemble(out)
    assert not model.training
    with torch.no_grad():
        got = model(x)
        one = torch.cat([model(x[i : i + 1]) for i in range(5)])
    assert got.shape == (5, 1) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy()[:, 0], by_hand, atol=1e-6)
    # Batch 1 against batch 5: other convolution kernels, other summation orders. One or two
    # float32 steps apart here (2.4e-7 s); 1e-5 as in the other batch-size checks.
    np.testing.assert_allclose(one.numpy(), got.numpy(), atol=1e-5)

    # Each saved file is a plain state_dict: tensors only, readable with weights_only.
    files = sorted((out / "members").glob("*.pt"))
    assert len(files) == 2 * 2
    for f in files:
        state = torch.load(f, map_location="cpu", weights_only=True)
        assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())

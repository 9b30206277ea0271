"""The zip's fast route for small batches computes what the plain composition does.

``EnsemblePredictor.fast_small_batches`` (switched on by the zip's ``submission.py``)
runs fold models sharing a configuration as one vmapped call and lone models with
im2col dilated convolutions at batch 1. Here, on random models with random BatchNorm
statistics (so every layer matters): the zip's own module, built by its own
``build_ensemble`` from a weights blob, against the reference written out by hand (µV =
volts × 1e6, the mean over each member's folds, the weighted sum, the shrinkage towards
the centre), at batch 1 and 4; the route is really taken; and it steps aside where it
must (autograd on, train mode, weights changed, models vmap refuses).
"""

from __future__ import annotations

import importlib
import itertools
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from eegtune.ensembles import ensemble_module as em
from eegtune.ensembles.submission import ENTRY, bundled_sources
from eegtune.models import create_model

ALPHA, CENTRE = 0.8, 1.5
TOL = {"rtol": 1e-6, "atol": 1e-6}
# (hyperparameters, folds) per member: two members share a configuration (one stacked
# group of 8), one stacks alone (4), one lone fold, one configuration of 2 folds (too few
# to stack: model by model).
LAYOUT = [({}, 4), ({}, 4), ({"n_filters": 24}, 4), ({"kernel_size": 3}, 1), ({"n_filters": 20}, 2)]
WEIGHTS = [0.3, 0.25, 0.2, 0.15, 0.1]


def random_tcn(seed: int, **hp) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model("softargmax_tcn", **hp)
    for layer in model.modules():
        if isinstance(layer, nn.BatchNorm1d):
            layer.running_mean.normal_(0.0, 0.2)
            layer.running_var.uniform_(0.5, 2.0)
    return model.eval()


def members(layout=LAYOUT, seed: int = 0) -> list[list[nn.Module]]:
    return [
        [random_tcn(seed + 100 * m + k, **hp) for k in range(n)] for m, (hp, n) in enumerate(layout)
    ]


def volts(n: int, seed: int = 0) -> torch.Tensor:
    """Float32 volts as the scorer feeds them: ~10 µV with per-channel offsets."""
    rng = np.random.default_rng(seed)
    x = 10e-6 * rng.standard_normal((n, 129, 200)) + 30e-6 * rng.standard_normal((1, 129, 1))
    return torch.from_numpy(x.astype(np.float32))


def reference(folds: list[list[nn.Module]], weights, x_volts: torch.Tensor) -> torch.Tensor:
    """The composition written out, model by model, without the ensemble's modules."""
    with torch.no_grad():
        uv = x_volts * 1e6
        bags = [torch.stack([f(uv) for f in member]).mean(dim=0) for member in folds]
        ens = sum(w * b for w, b in zip(weights, bags, strict=True))
        return CENTRE + ALPHA * (ens - CENTRE)


def predictor(folds, weights=WEIGHTS, fast: int = em.SMALL_BATCH) -> em.FromVolts:
    bags = [em.TrialBag(member) for member in folds]
    ensemble = em.EnsemblePredictor(bags, weights, ALPHA, CENTRE).fast_small_batches(fast)
    return em.FromVolts(ensemble).eval()


@pytest.fixture
def zip_entry(tmp_path, monkeypatch):
    """The zip's submission.py and sub_* modules, imported from a folder as the scorer
    does (then forgotten, so no other test sees them)."""
    files = {"submission.py": ENTRY.read_text(), **bundled_sources({"softargmax_tcn"})}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    try:
        yield importlib.import_module("submission")
    finally:
        for name in set(sys.modules) - before:
            if name == "submission" or name.startswith("sub_"):
                del sys.modules[name]


def blob(folds, weights=WEIGHTS) -> dict:
    return {
        "format": 1,
        "challenge": 1,
        "alpha": ALPHA,
        "centre": CENTRE,
        "members": [
            {
                "label": f"m{m}",
                "weight": w,
                "folds": [{"config": f.get_config(), "state_dict": f.state_dict()} for f in member],
            }
            for m, (member, w) in enumerate(zip(folds, weights, strict=True))
        ],
    }


@pytest.mark.parametrize("mode", ["inference_mode", "no_grad", "grad_enabled"])
def test_the_zips_model_equals_the_reference_at_batch_1_and_4(zip_entry, mode):
    folds = members()
    model = zip_entry.build_ensemble(blob(folds), torch.device("cpu"))
    model.eval()
    assert model.ensemble.max_fast_batch == zip_entry.FAST_SMALL_BATCHES == em.SMALL_BATCH > 1
    x = volts(4)
    context = {
        "inference_mode": torch.inference_mode,
        "no_grad": torch.no_grad,
        "grad_enabled": torch.enable_grad,
    }[mode]
    with context():
        singles = [model(x[i : i + 1]) for i in range(4)]
        four = model(x)
    assert model.ensemble._plan is not None  # the fast route was taken, whatever the mode
    for i, y in enumerate(singles):
        assert y.shape == (1, 1) and y.dtype == torch.float32 and not y.requires_grad
        torch.testing.assert_close(y, reference(folds, WEIGHTS, x[i : i + 1]), **TOL)
    torch.testing.assert_close(four, reference(folds, WEIGHTS, x), **TOL)
    # What the scorer reads, and how: y_pred[0][0], .detach().cpu().numpy().
    assert float(singles[0][0][0]) == pytest.approx(float(reference(folds, WEIGHTS, x[:1])[0][0]))
    assert singles[0].detach().cpu().numpy().shape == (1, 1)


def test_the_route_is_taken_stacked_alone_and_with_batch_one_convolutions():
    folds = members()
    model = predictor(folds)
    x = volts(1)
    with torch.inference_mode():
        model(x)
    plan = model.ensemble._plan
    kinds = sorted(
        (type(run).__name__, len(indices)) for indices, run in plan.runners
    )  # 8 + 4 stacked, 1 + 2 alone
    assert kinds == [("_Single", 1)] * 3 + [("_Stacked", 4), ("_Stacked", 8)]
    for _, run in plan.runners:
        if isinstance(run, em._Single):
            # A copy whose dilated convolutions (3 of 4 blocks × 2) are the batch-1 ones.
            layers = [m for m in run.model.modules() if isinstance(m, em._BatchOneConv1d)]
            assert len(layers) == 6
            assert not any(run.model is f for member in folds for f in member)
    # The originals are untouched: plain Conv1d everywhere.
    assert not any(isinstance(m, em._BatchOneConv1d) for m in model.modules())


def test_repeated_calls_agree_bit_for_bit_and_the_plain_route_within_tolerance():
    folds = members()
    fast, plain = predictor(folds), predictor(folds, fast=0)
    x = volts(3, seed=1)
    with torch.inference_mode():
        for i in range(3):
            first, second = fast(x[i : i + 1]), fast(x[i : i + 1])
            assert torch.equal(first, second)
            torch.testing.assert_close(first, plain(x[i : i + 1]), **TOL)
        # Above the small-batch limit the plain route runs, the same numbers.
        big = volts(em.SMALL_BATCH + 1, seed=2)
        torch.testing.assert_close(fast(big), plain(big), **TOL)
    assert plain.ensemble._plan is None


def test_autograd_and_train_mode_take_the_plain_route():
    folds = members([({}, 4)])
    ensemble = predictor(folds, weights=[1.0]).ensemble
    x = volts(1) * 1e6
    out = ensemble(x)  # autograd on: the fold models' own parameters, gradients and all
    assert ensemble._plan is None and out.grad_fn is not None
    out.sum().backward()
    assert folds[0][0].to_logits.weight.grad is not None
    with torch.no_grad():
        ensemble(x)
    assert ensemble._plan is not None
    ensemble.train()
    assert ensemble._plan is None
    with torch.no_grad():
        ensemble(x)
    assert ensemble._plan is None  # train mode: dropout is on, the plain route runs


def test_the_route_drops_its_copies_when_the_modules_change():
    folds, weights = members([({}, 4), ({}, 1)]), [0.6, 0.4]
    model = predictor(folds, weights)
    x = volts(1, seed=3)

    def nudge() -> None:  # every fold model's weights, in place, behind the ensemble's back
        with torch.no_grad():
            for f in itertools.chain(*folds):
                for p in f.parameters():
                    p.mul_(1.05)

    with torch.inference_mode():
        before = model(x)
        torch.testing.assert_close(before, reference(folds, weights, x), **TOL)
        nudge()
        assert torch.equal(model(x), before)  # documented: the route runs on copies
        for change in (lambda: model.eval(), lambda: model.to("cpu")):
            change()
            assert model.ensemble._plan is None
            torch.testing.assert_close(model(x), reference(folds, weights, x), **TOL)
            nudge()
        others = members([({}, 4), ({}, 1)], seed=7)
        model.load_state_dict(predictor(others, weights).state_dict())
        assert model.ensemble._plan is None
        torch.testing.assert_close(model(x), reference(others, weights, x), **TOL)


def test_models_vmap_refuses_run_as_they_are():
    # Closed-form models test `bool(self.fitted)`: data-dependent, so vmap raises on them.
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((6, 129, 200)) * 10).astype(np.float32)
    means = []
    for k in range(4):
        model = create_model("mean")
        model.fit(X, rng.standard_normal(6) + k)
        means.append(model.eval())
    folds = [means, [random_tcn(7)]]
    model = predictor(folds, weights=[0.5, 0.5])
    x = volts(2)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference(folds, [0.5, 0.5], x), **TOL)
    runners = model.ensemble._plan.runners
    assert all(isinstance(run, em._Single) for _, run in runners) and len(runners) == 5
    assert {id(run.model) for _, run in runners[:4]} == {id(m) for m in means}


@pytest.mark.parametrize(
    ("k", "dilation", "padding", "bias"),
    list(itertools.product((2, 3, 5), (2, 3, 8), ("same", "valid", 3), (True, False))),
)
def test_batch_one_conv1d_equals_conv1d(k, dilation, padding, bias):
    torch.manual_seed(k * 100 + dilation)
    conv = nn.Conv1d(7, 5, k, dilation=dilation, padding=padding, bias=bias)
    fast = em._BatchOneConv1d(7, 5, k, dilation=dilation, padding=padding, bias=bias)
    fast.load_state_dict(conv.state_dict())
    assert em._BatchOneConv1d.fits(conv)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # even kernels, odd dilation: torch warns on "same"
        for batch in (1, 3):
            x = torch.randn(batch, 7, 60) * 10
            torch.testing.assert_close(fast(x), conv(x), rtol=1e-6, atol=1e-5)

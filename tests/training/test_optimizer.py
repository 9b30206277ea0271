"""Per-group learning rates, weight decay by parameter kind, and the warm-up schedule."""

from __future__ import annotations

import importlib
import math

import pandas as pd
import pytest
import torch
from torch import nn

from eegtune.models import create_model
from eegtune.training.config import FoldJob, TrainConfig, make_config
from eegtune.training.optimizer import (
    build_optimizer,
    build_schedule,
    lr_factor,
    no_decay_parameters,
    warmup_steps,
)
from eegtune.training.reporting import LocalReporter, reporting_to
from eegtune.training.train_func import build_model, train_func
from eegtune.training.training_state import STATE_FILE
from tests.training.test_training_state import Interrupted, KilledAfter

# The module, not the function the package re-exports under the same name.
train_func_module = importlib.import_module("eegtune.training.train_func")
TINY = {"d_model": 16, "n_heads": 2, "n_layers": 1, "dropout": 0.2, "head_ratio": 0.1}
SHAPE = dict(n_chans=9, n_times=100)


def _model(name: str = "sparse_attention"):
    torch.manual_seed(0)
    params = TINY if name == "sparse_attention" else {"n_filters": 8, "n_blocks": 2}
    return create_model(name, **SHAPE, **params)


def _hp(**settings) -> TrainConfig:
    return TrainConfig(model="sparse_attention", model_params=TINY, **settings)


# --- the optimiser ---------------------------------------------------------------------


def test_norms_and_biases_get_no_weight_decay_and_everything_else_does():
    model = _model()
    opt = build_optimizer(model, _hp(weight_decay=0.05))
    names = {id(p): n for n, p in model.named_parameters()}
    norms = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.BatchNorm1d | nn.LayerNorm)
        for p in m.parameters(recurse=False)
    }
    assert norms and no_decay_parameters(model) == norms | {
        id(p) for n, p in model.named_parameters() if n.endswith(".bias")
    }
    for group in opt.param_groups:
        kept = group["name"].endswith(".no_decay")
        assert group["weight_decay"] == (0.0 if kept else 0.05), group["name"]
        for p in group["params"]:
            assert (id(p) in no_decay_parameters(model)) == kept, names[id(p)]
    assert [g["name"] for g in opt.param_groups] == [
        "front_end", "front_end.no_decay", "attention", "attention.no_decay",
        "head", "head.no_decay",
    ]  # fmt: skip


def test_what_decays_is_what_shrinks_under_a_zero_gradient():
    # AdamW with a zero gradient moves a parameter by decay alone: w <- w (1 - lr wd).
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, _hp(lr=0.1, weight_decay=0.5))
    (0.0 * sum(p.sum() for p in model.parameters())).backward()
    opt.step()
    kept = no_decay_parameters(model)
    for name, param in model.named_parameters():
        expected = before[name] if id(param) in kept else before[name] * (1 - 0.1 * 0.5)
        torch.testing.assert_close(param.detach(), expected, rtol=0, atol=1e-7, msg=name)
    # The old recipe decays them all.
    legacy = _model()
    opt = build_optimizer(legacy, _hp(lr=0.1, weight_decay=0.5, decay_norms_and_biases=True))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.5, 0.5, 0.5]


def test_each_group_learns_at_the_base_rate_times_its_multiplier():
    opt = build_optimizer(_model(), _hp(lr=2e-3, lr_mult={"attention": 3.0, "head": 0.5}))
    rates = {g["name"]: g["lr"] for g in opt.param_groups}
    assert rates["front_end"] == rates["front_end.no_decay"] == 2e-3
    assert rates["attention"] == rates["attention.no_decay"] == pytest.approx(6e-3)
    assert rates["head"] == rates["head.no_decay"] == pytest.approx(1e-3)


def test_a_multiplier_of_zero_freezes_its_group_and_the_others_learn():
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, _hp(lr=1e-2, lr_mult={"head": 0.0}))
    x, y = torch.randn(8, *SHAPE.values()), torch.randn(8)
    model.train()
    model.loss(x, y).backward()
    opt.step()
    groups = model.param_groups()
    moved = {
        g: [
            not torch.equal(before[n], p)
            for n, p in model.named_parameters()
            if any(p is q for q in params)
        ]
        for g, params in groups.items()
    }
    assert moved["head"] and not any(moved["head"])  # neither the step nor the decay moved it
    assert all(moved["attention"]) and any(moved["front_end"])


def test_a_multiplier_for_a_group_the_model_lacks_is_refused():
    with pytest.raises(ValueError, match=r"no parameter group\(s\) \['attention'\].*\['all'\]"):
        build_optimizer(_model("softargmax_tcn"), TrainConfig(lr_mult={"attention": 2.0}))
    with pytest.raises(ValueError, match=r"\['front_end', 'attention', 'head'\]"):
        build_optimizer(_model(), _hp(lr_mult={"atention": 2.0}))


# --- the schedule ----------------------------------------------------------------------


def _rates(hp: TrainConfig, steps_per_epoch: int) -> list[float]:
    opt = build_optimizer(_model(), hp)
    sched = build_schedule(opt, hp, steps_per_epoch)
    out = []
    for _ in range(hp.max_epochs * steps_per_epoch):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_ramps_linearly_then_decays_as_a_cosine():
    hp = _hp(lr=1e-3, max_epochs=4, warmup_epochs=1.0)
    rates = _rates(hp, steps_per_epoch=5)
    assert rates[:5] == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4, 1e-3])
    assert rates[5] == pytest.approx(1e-3) and rates[5:] == sorted(rates[5:], reverse=True)
    assert rates[-1] == pytest.approx(1e-3 * lr_factor(19, 20, 5)) and rates[-1] < 0.02 * 1e-3


def test_without_warmup_the_schedule_is_the_plain_cosine():
    hp = _hp(lr=1e-3, max_epochs=2)
    opt = build_optimizer(_model(), hp)
    assert isinstance(build_schedule(opt, hp, 5), torch.optim.lr_scheduler.CosineAnnealingLR)
    rates = _rates(hp, steps_per_epoch=5)
    assert rates == pytest.approx([1e-3 * lr_factor(k, 10, 0) for k in range(10)])


def test_warmup_is_at_most_half_the_run():
    assert warmup_steps(_hp(max_epochs=1, warmup_epochs=1.9), steps_per_epoch=10) == 5
    assert warmup_steps(_hp(max_epochs=4, warmup_epochs=0.5), steps_per_epoch=10) == 5


# --- through train_func ----------------------------------------------------------------


def _train(store, out, reporter=None, **settings):
    job = FoldJob(store=str(store), challenge=1, out_dir=str(out), fold=0, n_folds=3)
    hp = _hp(max_epochs=2, **settings)
    with reporting_to(reporter or LocalReporter()):
        train_func(make_config(job, hp))
    return pd.read_parquet(out / "fold0" / "oof.parquet"), job, hp


def _legacy_optimizer(model, hp):
    """The optimiser as it was before parameter groups: one AdamW group over everything."""
    return torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)


def _legacy_schedule(opt, hp, steps_per_epoch):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hp.max_epochs * steps_per_epoch)


def test_multipliers_of_one_without_warmup_reproduce_single_rate_training_bit_for_bit(
    prepared_store, tmp_path, monkeypatch
):
    ones = {"front_end": 1.0, "attention": 1.0, "head": 1.0}
    grouped, _, _ = _train(
        prepared_store, tmp_path / "g", lr_mult=ones, decay_norms_and_biases=True
    )
    monkeypatch.setattr(train_func_module, "build_optimizer", _legacy_optimizer)
    monkeypatch.setattr(train_func_module, "build_schedule", _legacy_schedule)
    single, _, _ = _train(prepared_store, tmp_path / "s", decay_norms_and_biases=True)
    pd.testing.assert_frame_equal(grouped, single, check_exact=True)
    monkeypatch.undo()
    # Under today's decay rule too, spelling the multipliers out as 1.0 changes nothing.
    absent, _, _ = _train(prepared_store, tmp_path / "a")
    spelt, _, _ = _train(prepared_store, tmp_path / "b", lr_mult=ones)
    pd.testing.assert_frame_equal(absent, spelt, check_exact=True)
    assert not absent["prediction"].equals(single["prediction"])  # the decay rule matters


def test_a_frozen_head_leaves_training_with_its_initial_weights(prepared_store, tmp_path):
    _, job, hp = _train(prepared_store, tmp_path, lr_mult={"head": 0.0})
    torch.manual_seed(hp.seed * 1000 + job.fold)  # as train_func seeds the initialisation
    initial = build_model(hp).state_dict()
    trained = torch.load(tmp_path / "fold0" / "checkpoint.pt", weights_only=True)["state_dict"]
    head = [k for k in initial if k.startswith("head.")]
    attention = [k for k in initial if k.startswith("blocks.")]
    assert head and all(torch.equal(trained[k], initial[k]) for k in head)
    assert attention and not any(torch.equal(trained[k], initial[k]) for k in attention)


def test_a_fold_with_warmup_resumes_to_the_uninterrupted_weights(prepared_store, tmp_path):
    whole, _, _ = _train(prepared_store, tmp_path / "whole", warmup_epochs=1.0)
    state = tmp_path / "cut" / "fold0" / STATE_FILE
    with pytest.raises(Interrupted):
        _train(prepared_store, tmp_path / "cut", KilledAfter(1, state), warmup_epochs=1.0)
    resumed_reporter = LocalReporter(state_path=state)
    resumed, _, _ = _train(prepared_store, tmp_path / "cut", resumed_reporter, warmup_epochs=1.0)
    assert [m["epoch"] for m in resumed_reporter.history if "train_loss" in m] == [1]
    pd.testing.assert_frame_equal(whole, resumed, check_exact=True)


class _StateRecorder(LocalReporter):
    """Keeps, beside each epoch's report, the rates its optimiser's groups hold then."""

    def __init__(self) -> None:
        super().__init__()
        self.group_rates: list[dict[str, float]] = []

    def report(self, metrics, checkpoint_dir=None, state=None) -> None:
        super().report(metrics, checkpoint_dir, state)
        if state is not None:
            groups = state.optimizer["param_groups"]
            self.group_rates.append({g["name"]: g["lr"] for g in groups})


def _formula_rate(lr: float, steps: int, steps_per_epoch: int, epochs: int, warmup_epochs: float):
    """README's schedule, written out: a linear warm-up over round(warmup_epochs × steps per
    epoch) steps (at most half the run) from lr/warm-up steps to lr, then a cosine from lr
    to 0 over the remaining steps; this is the base rate once ``steps`` steps are done."""
    total = epochs * steps_per_epoch
    warm = min(round(warmup_epochs * steps_per_epoch), total // 2)
    if steps < warm:
        return lr * (steps + 1) / warm
    return lr * 0.5 * (1.0 + math.cos(math.pi * (steps - warm) / (total - warm)))


@pytest.mark.parametrize(
    ("epochs", "warmup_epochs"),
    [(4, 1.5), (3, 5.0)],  # the second asks for more warm-up than half the run allows
    ids=["warmup", "warmup_capped"],
)
def test_the_reported_lr_is_the_formulas_base_rate_every_epoch(
    prepared_store, tmp_path, epochs, warmup_epochs
):
    lr, mult, batch = 2e-3, {"attention": 0.3, "head": 3.0}, 16
    job = FoldJob(store=str(prepared_store), challenge=1, out_dir=str(tmp_path), fold=0, n_folds=3)
    hp = _hp(
        lr=lr,
        lr_mult=mult,
        warmup_epochs=warmup_epochs,
        max_epochs=epochs,
        patience=epochs,
        batch_size=batch,
    )
    reporter = _StateRecorder()
    with reporting_to(reporter):
        summary = train_func(make_config(job, hp))
    steps_per_epoch = math.ceil(summary["n_fit_windows"] / batch)
    assert steps_per_epoch >= 3  # enough steps that a wrong step count shows

    epochs_reported = [m for m in reporter.history if "lr" in m]
    assert [m["epoch"] for m in epochs_reported] == list(range(epochs))
    assert len(reporter.group_rates) == epochs
    for m, rates in zip(epochs_reported, reporter.group_rates, strict=True):
        steps = (m["epoch"] + 1) * steps_per_epoch
        want = _formula_rate(lr, steps, steps_per_epoch, epochs, warmup_epochs)
        # The report's lr is the base rate (the front end's, multiplier 1), not a group's.
        assert m["lr"] == pytest.approx(want, rel=1e-9, abs=1e-15), m["epoch"]
        # ... and it is the rate the optimiser really holds then, times each multiplier.
        for name, rate in rates.items():
            group = name.removesuffix(".no_decay")
            assert rate == pytest.approx(want * mult.get(group, 1.0), rel=1e-9, abs=1e-15), name
    # The run ends annealed to 0, and the rates in between are not all the peak.
    assert epochs_reported[-1]["lr"] == pytest.approx(0.0, abs=1e-15)
    assert len({round(m["lr"] / lr, 9) for m in epochs_reported}) == epochs

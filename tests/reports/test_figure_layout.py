"""The report's figures as drawn: no text runs into other text, slice panels sit in a grid.

Fast: Optuna studies made here, no experiment. The figures of a real report are checked
the same way in test_report.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
import pytest

from eegtune.distributed.experiment import Experiment
from eegtune.reports import figures as report_figures
from eegtune.reports.experiment_data import ExperimentData
from eegtune.reports.figures import Overlap, overlapping_text, text_boxes
from eegtune.reports.search_figures import (
    OBJECTIVE,
    PANELS_PER_ROW,
    UNITS,
    _focus,
    sparse_log_ticks,
)

ATTENTION = ["lr", "lr_mult.attention", "lr_mult.head", "model.head_ratio"]
RANGES = {  # as the spaces search them (search_spaces/subspaces.py)
    "lr": (1e-4, 1e-2),
    "model.head_ratio": (0.02, 0.5),
    "lr_mult.attention": (0.1, 10.0),
    "lr_mult.head": (0.1, 10.0),
}
COLUMNS = ["trial", "status", "val_nrmse", "oof_nrmse", "fold_oof_nrmse", "trial_dir"]


def _study(params: list[str], trials: int = 12) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(trials):
        trial = study.ask()
        values = [trial.suggest_float(p, *RANGES[p], log=True) for p in params]
        study.tell(trial, float(np.sum(np.log(values))))
    return study


def _data(params: list[str]) -> ExperimentData:
    return ExperimentData(
        experiment=Experiment("x", Path("x"), {"space": "sparse_attention", "seed": 0}),
        study=_study(params),
        table=pd.DataFrame(columns=[*COLUMNS, *params]),
        trials=pd.DataFrame(),
    )


@dataclass
class Drawn:
    fig: plt.Figure
    overlaps: list[Overlap]
    texts: list[str]  # every text drawn, in drawing order


@pytest.fixture
def drawn(monkeypatch) -> list[Drawn]:
    """The matplotlib figures the report saves, read as drawn just before saving."""
    seen: list[Drawn] = []
    original = report_figures.to_png

    def capture(fig: plt.Figure) -> bytes:
        texts = [t.get_text() for t, _ in text_boxes(fig)]
        seen.append(Drawn(fig, overlapping_text(fig), texts))
        return original(fig)

    monkeypatch.setattr(report_figures, "to_png", capture)
    return seen


def test_overlapping_text_names_texts_drawn_over_each_other():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.text(0.5, 0.5, "first label", transform=ax.transAxes)
    ax.text(0.52, 0.51, "second label", transform=ax.transAxes)
    far = ax.text(0.05, 0.9, "far away", transform=ax.transAxes)
    found = overlapping_text(fig)
    assert [(o.first, o.second) for o in found] == [("first label", "second label")]
    assert found[0].area > 10
    far.set_position((0.55, 0.5))
    far.set_visible(False)  # a hidden text is not drawn: it overlaps nothing
    assert len(overlapping_text(fig)) == 1
    plt.close(fig)


def test_overlapping_text_counts_only_the_tick_labels_drawn():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_ylim(0, 1)
    ax.set_yticks([0.0, 0.5, 1.0])
    ax.text(-0.02, 0.5, "over the tick labels", transform=ax.transAxes, ha="right", va="center")
    assert any("over the tick labels" in (o.first, o.second) for o in overlapping_text(fig))
    ax.tick_params(axis="y", labelleft=False)
    assert overlapping_text(fig) == []
    # Ticks placed beyond the view keep a label that is never drawn.
    ax.set_yticks([-5.0, 0.0, 1.0, 6.0])
    ax.set_ylim(0, 1)  # set_yticks widened the view to hold them all
    ax.tick_params(axis="y", labelleft=True)
    drawn = {t for t, _ in text_boxes(fig)}
    labels = {tick.get_loc(): tick.label1 for tick in ax.yaxis.get_major_ticks()}
    plt.close(fig)
    assert labels.keys() == {-5.0, 0.0, 1.0, 6.0}
    assert labels[0.0] in drawn and labels[1.0] in drawn
    assert labels[-5.0] not in drawn and labels[6.0] not in drawn


def test_overlapping_text_catches_the_old_one_row_slice_layout():
    """The layout the report had: Optuna's four panels in one row, rotated log labels."""
    import optuna.visualization.matplotlib as ovm

    axes = ovm.plot_slice(_study(ATTENTION), params=ATTENTION, target_name="val_nrmse")
    for ax, name in zip(axes, ATTENTION, strict=True):
        ax.set_title("", loc="left")
        ax.set_xlabel(UNITS[name])
        ax.set_ylabel(OBJECTIVE)
        ax.tick_params(axis="x", labelrotation=30)
    fig = axes[0].figure
    found = overlapping_text(fig)
    plt.close(fig)
    pairs = {frozenset((o.first, o.second)) for o in found}
    labels = set(UNITS.values())
    assert any(pair <= labels for pair in pairs), found  # an x label runs into the next
    assert any(not pair & labels for pair in pairs), found  # tick labels collide


@pytest.mark.parametrize(
    "params",
    [ATTENTION, ["lr"], ["lr", "lr_mult.attention", "model.head_ratio"]],
    ids=["attention-four", "softargmax_tcn-one", "three"],
)
def test_the_slice_figure_is_a_grid_whose_text_does_not_overlap(params, drawn):
    figure = _focus(_data(params))
    assert figure.png is not None, figure.note
    ((fig, overlaps, texts),) = ((d.fig, d.overlaps, d.texts) for d in drawn)
    assert overlaps == [], [str(o) for o in overlaps]
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == len(params)
    rows = {round(ax.get_position().y0, 3) for ax in panels}
    columns = {round(ax.get_position().x0, 3) for ax in panels}
    assert len(columns) == min(len(params), PANELS_PER_ROW)
    assert len(rows) == -(-len(params) // PANELS_PER_ROW)
    # eegtune's title alone: Optuna's own "Slice Plot" is gone from one panel and from many.
    assert "Slice Plot" not in texts
    assert fig.get_suptitle() == figure.title and figure.title in texts
    assert not any(ax.get_title(loc) for ax in panels for loc in ("left", "center", "right"))
    assert fig.get_supylabel() == OBJECTIVE


@pytest.mark.parametrize(
    "view",
    [(1e-4, 1e-2), (1.1e-4, 8e-3), (0.018, 0.55), (0.09, 11.0), (0.3, 0.6), (1e-7, 1.0)],
)
def test_a_log_axis_gets_a_few_labels_that_stay_apart(view):
    fig, ax = plt.subplots(figsize=(4.4, 3.4))
    ax.set_xscale("log")
    ax.set_xlim(*view)
    sparse_log_ticks(ax.xaxis)
    labels = [t for t, _ in text_boxes(fig) if t in _tick_labels(ax.xaxis)]
    found = overlapping_text(fig)
    plt.close(fig)
    assert 2 <= len(labels) <= 6, [t.get_text() for t in labels]
    assert found == [], [str(o) for o in found]


def _tick_labels(axis) -> list:
    return [t.label1 for t in (*axis.get_major_ticks(), *axis.get_minor_ticks())]


def test_each_slice_panel_is_labelled_with_its_own_parameter(drawn):
    assert _focus(_data(["lr", "model.head_ratio", "lr_mult.attention"])).png is not None
    fig = drawn[0].fig
    limits = {ax.get_xlabel(): ax.get_xlim() for ax in fig.axes}
    # Each axis holds its own parameter's values, whatever order Optuna draws them in.
    assert limits["learning rate"][1] < 0.02
    assert limits["head ratio (attention groups per token)"][0] > 0.01
    assert limits["head ratio (attention groups per token)"][1] < 1.0
    assert limits["attention group's rate / learning rate"][1] > 1.0

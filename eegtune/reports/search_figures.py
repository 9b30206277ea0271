"""How a search went, drawn by Optuna's own visualisation module from the experiment's
study (matplotlib backend), plus the one view Optuna lacks: best-so-far against compute.
Optuna's slice panels are laid out again here, in a grid with sparse log-axis labels, so
that none of their text runs into another's.

The objective is ``val_nrmse``, the pooled inner-validation NRMSE that the sampler and
ASHA act on (unitless; 1.0 is the mean predictor's level).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axis import Axis
from matplotlib.ticker import LogFormatterSciNotation, LogLocator, MaxNLocator, NullFormatter

from eegtune.reports.experiment_data import ExperimentData
from eegtune.reports.figures import Figure, figure, labelled

OBJECTIVE = "val_nrmse (inner-validation NRMSE, unitless)"
# The search parameters the report shows against the objective, where the space has them.
FOCUS = ("model.head_ratio", "lr", "lr_mult.attention", "lr_mult.head")
NAMES = {
    "model.head_ratio": "head ratio",
    "lr": "learning rate",
    "lr_mult.attention": "attention rate multiplier",
    "lr_mult.head": "head rate multiplier",
}
UNITS = {
    **NAMES,
    "model.head_ratio": "head ratio (attention groups per token)",
    "lr_mult.attention": "attention group's rate / learning rate",
    "lr_mult.head": "head group's rate / learning rate",
}


# Slice panels per row, and each one's size (inches): at 110 dpi two panels and the colour
# bar fit the page's 70rem column unscaled, and their log axes' labels stay apart.
PANELS_PER_ROW = 2
PANEL_SIZE = (4.4, 3.4)
# A log axis's labelled multiples of each power of ten, sparsest first (sparse_log_ticks).
LOG_SUBS = ((1.0,), (1.0, 2.0, 5.0), tuple(float(c) for c in range(1, 10)))


def search_figures(data: ExperimentData) -> list[Figure]:
    return [_history(data), _history_by_compute(data), _importances(data), _focus(data)]


def _history(data: ExperimentData) -> Figure:
    def draw() -> plt.Figure:
        import optuna.visualization.matplotlib as ovm

        ax = ovm.plot_optimization_history(data.study, target_name="val_nrmse")
        return labelled(ax, "Optimisation history", "trial number", OBJECTIVE)

    return figure(
        f"{data.name}-history",
        "Optimisation history",
        "Each finished trial's objective, and the best so far, in the order trials started.",
        draw,
    )


def _history_by_compute(data: ExperimentData) -> Figure:
    def draw() -> plt.Figure | None:
        done = data.trials.dropna(subset=["finished"]).sort_values("finished")
        if done.empty:
            return None
        spent = done["fold_epochs"].cumsum().to_numpy()
        value = done["value"].to_numpy(dtype=float)
        best = np.fmin.accumulate(np.where(np.isnan(value), np.inf, value))
        _, ax = plt.subplots(figsize=(6.4, 3.6))
        ax.scatter(spent, value, s=18, alpha=0.6, label="trial")
        ax.step(spent, np.where(np.isinf(best), np.nan, best), where="post", label="best so far")
        ax.legend()
        return labelled(ax, "Best so far against compute", "fold-epochs spent", OBJECTIVE)

    return figure(
        f"{data.name}-compute",
        "Best so far against compute",
        "The best objective against the fold-epochs all trials had used when it was reached "
        "(trials in the order they ended; ASHA's stopped trials count what they ran).",
        draw,
    )


def _importances(data: ExperimentData) -> Figure:
    def draw() -> plt.Figure:
        import optuna
        import optuna.visualization.matplotlib as ovm

        # PED-ANOVA: Optuna's own, deterministic, and needs no scikit-learn (fANOVA does).
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        ax = ovm.plot_param_importances(data.study, evaluator=evaluator, target_name="val_nrmse")
        return labelled(
            ax, "Hyperparameter importances", "importance (PED-ANOVA, share)", "parameter"
        )

    return figure(
        f"{data.name}-importances",
        "Hyperparameter importances",
        "How much each parameter separates the best trials from the rest (Optuna's "
        "PED-ANOVA over finished trials); few trials make this rough.",
        draw,
    )


def _focus(data: ExperimentData) -> Figure:
    # Sorted, as plot_slice orders its panels: labels must follow the same order.
    wanted = sorted(p for p in FOCUS if p in data.params)
    named = [NAMES[p] for p in wanted] or ["head ratio", "learning rate"]
    shown = " and ".join([", ".join(named[:-1]), named[-1]] if len(named) > 1 else named)
    title = f"{shown[0].upper()}{shown[1:]} against the objective"
    caption = (
        f"Each finished trial's objective against the {shown} (the space's own scales); "
        "colour is the trial number."
    )
    if not wanted:
        return Figure(
            f"{data.name}-focus",
            title,
            caption,
            note=f"not drawn: space {data.settings['space']!r} searches neither {FOCUS}",
        )

    def draw() -> plt.Figure:
        import optuna.visualization.matplotlib as ovm

        axes = list(
            np.atleast_1d(ovm.plot_slice(data.study, params=wanted, target_name="val_nrmse"))
        )
        fig = axes[0].figure
        for ax, name in zip(axes, wanted, strict=True):
            ax.set_title("")  # Optuna's own "Slice Plot" on a one-panel figure
            ax.set_xlabel(UNITS[name])
            # One label for the panels' shared y axis: on each, it was taller than a panel
            # and ran into the panel above it and the title.
            ax.set_ylabel("")
            sparse_log_ticks(ax.xaxis)
        in_grid(fig, axes)
        fig.suptitle(title)  # in place of Optuna's own "Slice Plot" over several panels
        fig.supylabel(OBJECTIVE)
        return fig

    return figure(f"{data.name}-focus", title, caption, draw)


def in_grid(fig: plt.Figure, axes: list[plt.Axes]) -> None:
    """Lay Optuna's slice panels out at most :data:`PANELS_PER_ROW` to a row.

    Optuna puts every panel in one row, 3.2 inches each: four panels' axis labels run into
    each other. Its colour bar was placed for that row, so it is drawn again for the grid.
    """
    columns = min(len(axes), PANELS_PER_ROW)
    rows = math.ceil(len(axes) / columns)
    points = axes[-1].collections[0]  # the trials Optuna coloured by number (its colour bar's)
    for other in [a for a in fig.axes if a not in axes]:
        other.remove()
    fig.set_size_inches(PANEL_SIZE[0] * columns + 1.0, PANEL_SIZE[1] * rows + 0.6)
    fig.set_layout_engine("constrained")  # room for every panel's labels, the bar and title
    grid = fig.add_gridspec(rows, columns)
    for i, ax in enumerate(axes):
        ax.set_subplotspec(grid[divmod(i, columns)])
        # Optuna's label_outer() hid the shared y axis's numbers past its row's first panel.
        ax.tick_params(axis="y", labelleft=True)
    bar = fig.colorbar(points, ax=axes, label="trial number")
    bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # no trial 0.25


def sparse_log_ticks(axis: Axis, most: int = 5) -> None:
    """Few labels on a log axis: matplotlib labels 2×, 3×, … 9× each power of ten on an
    axis spanning under two decades, and those labels collide in a panel a few inches wide.

    Powers of ten where the view holds two or more of them; else 1×, 2× and 5× each; else
    (a view under a factor of about 2.5) every whole multiple. Every major tick is labelled:
    matplotlib's own formatter would skip 5× and label 3× instead.
    """
    if axis.get_scale() != "log":
        return
    low, high = sorted(axis.get_view_interval())
    subs = next((s for s in LOG_SUBS if _log_ticks_within(low, high, s) >= 2), LOG_SUBS[-1])
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=most))
    axis.set_major_formatter(
        LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(math.inf, math.inf))
    )
    axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10), numticks=12))
    axis.set_minor_formatter(NullFormatter())  # the minor ticks stay marks, unlabelled


def _log_ticks_within(low: float, high: float, subs: tuple[float, ...]) -> int:
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    return sum(low <= c * 10.0**k <= high for k in decades for c in subs)

"""How a search went, drawn by Optuna's own visualisation module from the experiment's
study (matplotlib backend), plus the one view Optuna lacks: best-so-far against compute.

The objective is ``val_nrmse``, the pooled inner-validation NRMSE that the sampler and
ASHA act on (unitless; 1.0 is the mean predictor's level).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

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

        axes = np.atleast_1d(ovm.plot_slice(data.study, params=wanted, target_name="val_nrmse"))
        for ax, name in zip(axes, wanted, strict=True):
            ax.set_title("", loc="left")
            ax.set_xlabel(UNITS[name])
            ax.set_ylabel(OBJECTIVE)
            ax.tick_params(axis="x", labelrotation=30)  # log-scale labels collide otherwise
        fig = axes[0].figure
        fig.suptitle(title)
        return fig

    return figure(f"{data.name}-focus", title, caption, draw)

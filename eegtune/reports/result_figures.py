"""What the trials and ensembles predicted: folds, out-of-fold predictions, subjects'
errors, and each ensemble method against its baselines."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from eegtune.reports.experiment_data import ExperimentData
from eegtune.reports.figures import Figure, figure, labelled

# Challenge 1 targets are response times in seconds; Challenge 2's externalizing score is
# the CBCL factor score, a standardised (z-like) unit.
TARGET_UNITS = {1: "response time (s)", 2: "externalizing score (z units)"}
ERROR_UNITS = {1: "RMSE (s)", 2: "RMSE (z units)"}


def fold_figure(data: ExperimentData, top: int) -> Figure:
    title = "Each fold's NRMSE across the top trials"
    caption = (
        "Out-of-fold NRMSE per outer fold for the best trials and the mean predictor on the "
        "same folds: a column dark for every trial is a fold that is hard for all of them."
    )

    def draw() -> plt.Figure | None:
        rows = [(f"trial {int(r.trial)}", list(r.fold_oof_nrmse)) for r in _top(data, top)]
        if not rows:
            return None
        if data.mean_predictor:
            rows.append(("mean predictor", data.mean_predictor["fold_oof_nrmse"]))
        grid = np.array([v for _, v in rows], dtype=float)
        size = (max(4.8, 1.2 + 0.9 * grid.shape[1]), 1.0 + 0.45 * len(rows))
        fig, ax = plt.subplots(figsize=size, layout="constrained")
        image = ax.imshow(grid, cmap="viridis_r", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            colour = _ink_on(image.cmap(image.norm(v)))
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", color=colour, fontsize=8)
        ax.set_yticks(range(len(rows)), [name for name, _ in rows])
        ax.set_xticks(range(grid.shape[1]), [str(k) for k in range(grid.shape[1])])
        fig.colorbar(image, ax=ax, label="out-of-fold NRMSE (unitless)")
        labelled(ax, "", "outer fold", "trial, best inner-validation first", grid=False)
        # Over the whole figure: over the axes, a title wider than a few folds' columns
        # ran into the colour bar's label.
        fig.suptitle(title)
        return fig

    return figure(f"{data.name}-folds", title, caption, draw)


def prediction_figures(data: ExperimentData) -> list[Figure]:
    best = _best_oof(data)
    units = TARGET_UNITS[data.challenge]
    if data.challenge == 1:
        scatter_caption = (
            "The best trial's out-of-fold prediction for every Challenge 1 trial window "
            "against its true response time; the diagonal is a perfect prediction."
        )
    else:
        scatter_caption = (
            "The best trial's out-of-fold prediction averaged over each subject's windows "
            "against the subject's true score; the diagonal is a perfect prediction."
        )

    def scatter() -> plt.Figure | None:
        if best is None:
            return None
        frame = best if data.challenge == 1 else _per_subject_means(best)
        _, ax = plt.subplots(figsize=(4.8, 4.4))
        ax.scatter(frame["target"], frame["prediction"], s=10, alpha=0.5)
        lo = float(min(frame["target"].min(), frame["prediction"].min()))
        hi = float(max(frame["target"].max(), frame["prediction"].max()))
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1)
        return labelled(ax, "Predicted against true", f"true {units}", f"predicted {units}")

    def errors() -> plt.Figure | None:
        if best is None:
            return None
        per_subject = best.groupby("subject").apply(
            lambda g: float(np.sqrt(np.mean((g["prediction"] - g["target"]) ** 2))),
            include_groups=False,
        )
        _, ax = plt.subplots(figsize=(5.6, 3.4))
        ax.hist(per_subject.to_numpy(), bins=min(30, max(5, len(per_subject) // 2)))
        return labelled(
            ax, "Per-subject error", f"subject's {ERROR_UNITS[data.challenge]}", "subjects"
        )

    return [
        figure(f"{data.name}-predictions", "Predicted against true", scatter_caption, scatter),
        figure(
            f"{data.name}-subject-errors",
            "Per-subject error",
            "The distribution over subjects of the best trial's out-of-fold RMSE on each "
            "subject's own windows.",
            errors,
        ),
    ]


def ensemble_figure(name: str, description: dict[str, Any]) -> Figure:
    title = "Ensemble methods, nested"
    caption = (
        "Each method's nested out-of-fold NRMSE with its 95% subject-bootstrap interval, "
        "against the best single trial (chosen nested) and the mean predictor."
    )

    def draw() -> plt.Figure:
        scores = description["scores"]
        methods = scores["methods"]
        names = list(methods)
        value = np.array([methods[m]["nested_nrmse"] for m in names])
        low = value - np.array([methods[m]["nested_interval"][0] for m in names])
        high = np.array([methods[m]["nested_interval"][1] for m in names]) - value
        _, ax = plt.subplots(figsize=(5.6, 3.4))
        ax.errorbar(range(len(names)), value, yerr=[low, high], fmt="o", capsize=4)
        ax.axhline(scores["best_single"]["nested_nrmse"], ls="--", c="C1", label="best single")
        ax.axhline(scores["mean_predictor_nested_nrmse"], ls=":", c="C2", label="mean predictor")
        ax.set_xticks(range(len(names)), names)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the data, not on it
        return labelled(ax, title, "method", "nested out-of-fold NRMSE (unitless)")

    return figure(f"ensemble-{name}", title, caption, draw)


def _ink_on(background: tuple[float, ...]) -> str:
    """Black on a light cell, white on a dark one: white on viridis's yellow is unreadable.
    A fold without a score (NaN) is a see-through cell on the light axes."""
    red, green, blue, alpha = background
    light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 or alpha < 0.5
    return "black" if light else "white"


def _top(data: ExperimentData, top: int) -> list:
    done = data.complete.head(top)
    return [r for r in done.itertuples() if isinstance(r.fold_oof_nrmse, list | np.ndarray)]


def _best_oof(data: ExperimentData) -> pd.DataFrame | None:
    return next(iter(data.oof.values()), None)


def _per_subject_means(oof: pd.DataFrame) -> pd.DataFrame:
    return oof.groupby("subject")[["target", "prediction"]].mean().reset_index()

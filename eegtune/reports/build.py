"""``eegtune report``: the sections of the page, from experiments, ensembles and scores."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eegtune import storage
from eegtune.ensembles.predictor import read_description
from eegtune.ensembles.remote import fetch_ensemble
from eegtune.metrics import nrmse, overall_score, rmse
from eegtune.reports import page as html
from eegtune.reports.experiment_data import ExperimentData, load_experiment, wall_seconds
from eegtune.reports.figures import Figure
from eegtune.reports.result_figures import ensemble_figure, fold_figure, prediction_figures
from eegtune.reports.search_figures import search_figures


@dataclass(frozen=True)
class ReportRequest:
    experiments: tuple[str, ...]
    out: str
    ensembles: tuple[str, ...] = ()
    scores: str | None = None  # the per-window predictions Parquet of `eegtune score`
    top: int = 10  # leaderboard rows; the top 5 COMPLETE trials' OOF rows are read


def build_report(req: ReportRequest) -> tuple[Path, list[Figure]]:
    """Write the page to ``req.out``; return its path and every figure it holds."""
    figures: list[Figure] = []
    sections: list[str] = []
    for location in req.experiments:
        data = load_experiment(location)
        sections += experiment_sections(data, req.top, figures)
    sections.append(ensemble_sections(req.ensembles, figures))
    sections.append(scores_section(req.scores))
    names = ", ".join(storage.name_of(e) for e in req.experiments)
    text = html.page(f"eegtune report: {names}", f"written {_now()}", sections)
    out = Path(req.out)
    storage.write_text(out, text)
    return out, figures


def experiment_sections(data: ExperimentData, top: int, figures: list[Figure]) -> list[str]:
    s = data.settings
    counts = data.table["status"].value_counts() if not data.table.empty else pd.Series(dtype=int)
    header = html.facts(
        [
            ("experiment", data.name),
            ("location", data.location),
            ("store", s["store"]),
            ("challenge", data.challenge),
            ("folds", f"{data.n_folds}, subject-grouped, split seed {s['seed']}"),
            ("space", f"{s['space']} (version {s.get('space_version', '?')})"),
            ("search", f"{s.get('sampler', 'tpe')} sampler, {s.get('scheduler', 'asha')}"),
            ("trials", ", ".join(f"{n} {k}" for k, n in counts.items()) or "none"),
            ("wall time", _duration(wall_seconds(data.trials))),
            ("fold-epochs spent", int(data.trials["fold_epochs"].sum())),
        ]
    )
    search = search_figures(data)
    folds = fold_figure(data, top)
    predictions = prediction_figures(data)
    figures += [*search, folds, *predictions]
    return [
        html.section(f"Experiment {data.name}", header, key=f"{data.name}-header"),
        html.section("Leaderboard", _leaderboard(data, top), key=f"{data.name}-leaderboard"),
        html.section("Search", *map(html.figure_html, search), key=f"{data.name}-search"),
        html.section("Folds", html.figure_html(folds), key=f"{data.name}-folds"),
        html.section(
            "Predictions", *map(html.figure_html, predictions), key=f"{data.name}-predictions"
        ),
    ]


def _leaderboard(data: ExperimentData, top: int) -> str:
    if data.table.empty:
        return html.note("no trial has been recorded in this experiment's study")
    shown = ["trial", "status", "val_nrmse", "oof_nrmse", "fold_oof_nrmse", *data.params]
    if "stopped_by" in data.table and data.table["stopped_by"].head(top).astype(bool).any():
        shown.append("stopped_by")
    board = data.table[shown].head(top).copy()
    if data.mean_predictor:
        row = {c: None for c in shown}
        row.update(trial="mean predictor", status="", **data.mean_predictor)
        board = pd.concat([board, pd.DataFrame([row])], ignore_index=True)
    stopped = (board["status"] == "STOPPED").sum()
    caption = (
        "Best inner-validation NRMSE first (what the search ranked by); out-of-fold NRMSE "
        "pooled and per fold (what the trial scored on subjects it never saw); the mean "
        "predictor on the same folds last."
    )
    if stopped:
        caption += (
            f" {stopped} stopped trial(s) have no out-of-fold figures; the last column says "
            f"what stopped each (ASHA at a rung, or the fold race and the numbers behind it)."
        )
    return f"<p>{html.esc(caption)}</p>" + html.table(board)


def ensemble_sections(locations: tuple[str, ...], figures: list[Figure]) -> str:
    if not locations:
        return html.section("Ensembles", html.note("no ensemble given (--ensemble ENS_DIR)"))
    parts = []
    for location in locations:
        desc = read_description(fetch_ensemble(location))
        scores = desc["scores"]
        methods = pd.DataFrame(
            [
                {
                    "method": name + (" (chosen)" if name == desc["method"] else ""),
                    "nested NRMSE": m["nested_nrmse"],
                    "95% interval": m["nested_interval"],
                    "gain vs best single": m["gain"],
                    "naive (in-sample)": m["naive_nrmse"],
                    "alpha": m["alpha"],
                    "members": m["members_used"],
                }
                for name, m in scores["methods"].items()
            ]
        )
        members = pd.DataFrame(
            [{"member": m["label"], "weight": m["weight"]} for m in desc["members"]]
            or [{"member": "none: the mean predictor ships", "weight": None}]
        )
        fig = ensemble_figure(storage.name_of(location), desc)
        figures.append(fig)
        best = scores["best_single"]
        parts.append(
            f"<h3>{html.esc(storage.name_of(location))}</h3>"
            + html.facts(
                [
                    ("challenge", desc["challenge"]),
                    ("shipped", desc["shipped"]),
                    ("guard", desc.get("guard") or "the chosen method beat both baselines"),
                    ("best single trial", f"{best['member']}: nested {best['nested_nrmse']:.4f}"),
                    ("mean predictor", f"nested {scores['mean_predictor_nested_nrmse']:.4f}"),
                ]
            )
            + html.table(methods)
            + html.table(members)
            + html.figure_html(fig)
        )
    return html.section("Ensembles", *parts, key="ensembles")


def scores_section(predictions: str | None) -> str:
    if not predictions:
        return html.section("Held-out scores", html.note("no scores given (--scores PRED.parquet)"))
    frame = storage.read_parquet(predictions)
    rows, nrmses = [], {}
    for challenge, g in frame.groupby("challenge"):
        y, p = g["target"].to_numpy(float), g["prediction"].to_numpy(float)
        nrmses[int(challenge)] = nrmse(y, p)
        row = {
            "challenge": int(challenge),
            "windows": len(g),
            "subjects": g["subject"].nunique(),
            "RMSE": rmse(y, p),
            "NRMSE": nrmses[int(challenge)],
            "R²": 1.0 - nrmses[int(challenge)] ** 2,
        }
        if "mean_prediction" in g:
            row["mean predictor NRMSE"] = nrmse(y, g["mean_prediction"].to_numpy(float))
        rows.append(row)
    parts = [html.table(pd.DataFrame(rows))]
    if set(nrmses) == {1, 2}:
        parts.append(f"<p>overall 0.3·C1 + 0.7·C2: {overall_score(nrmses[1], nrmses[2]):.4f}</p>")
    return html.section("Held-out scores", *parts, key="scores")


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "—"
    return str(dt.timedelta(seconds=round(seconds)))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

"""`eegtune report` on a real finished experiment: the page, its numbers and its figures."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from eegtune.cli import main
from eegtune.ensembles import EnsembleRequest, build_ensemble
from eegtune.metrics import nrmse
from eegtune.reports import ReportRequest, build_report
from eegtune.reports import figures as report_figures
from eegtune.reports.figures import overlapping_text
from eegtune.training.train_func import oof_frame
from tests.reports.page_html import Section, number_in, sections, shows, value

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # the shared experiment

EXPERIMENT_FIGURES = ("history", "compute", "importances", "focus", "folds", "predictions")


@pytest.fixture(scope="module")
def ensemble(finished_experiment, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report_ens") / "ens"
    req = EnsembleRequest(experiments=(str(finished_experiment),), challenge=1, out=str(out))
    build_ensemble(req, log=lambda _: None)
    return out


def _scores_parquet(path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for challenge, mean in ((1, 1.5), (2, 0.0)):
        y = mean + rng.standard_normal(40)
        rows.append(
            pd.DataFrame(
                {
                    "challenge": challenge,
                    "subject": np.repeat([f"S{i}" for i in range(4)], 10),
                    "target": y,
                    "prediction": y + 0.5 * rng.standard_normal(40),
                    "mean_prediction": mean,
                }
            )
        )
    pd.concat(rows).to_parquet(path, index=False)
    return path


def _figures(page: str) -> dict[str, str]:
    return dict(re.findall(r'<figure data-figure="([^"]+)" data-drawn="(true|false)"', page))


@pytest.fixture(scope="module")
def scores(tmp_path_factory) -> Path:
    return _scores_parquet(tmp_path_factory.mktemp("report_scores") / "pred.parquet")


@pytest.fixture(scope="module")
def full_report(finished_experiment, ensemble, scores, tmp_path_factory) -> tuple[str, list]:
    """The page with every part: an experiment, an ensemble and held-out scores."""
    out = tmp_path_factory.mktemp("report_full") / "r.html"
    req = ReportRequest((str(finished_experiment),), str(out), (str(ensemble),), str(scores))
    path, figs = build_report(req)
    return path.read_text(), figs


def test_the_page_is_self_contained_and_every_figure_is_drawn(full_report, ensemble):
    page, figs = full_report
    # Opens offline: nothing fetched, nothing run.
    assert "<script" not in page and "<link" not in page
    assert not re.search(r'src="(?!data:image/png;base64,)', page)
    drawn = _figures(page)
    for key in (*EXPERIMENT_FIGURES, "subject-errors"):
        assert drawn.get(f"c1-{key}") == "true", (key, [f.note for f in figs if f.png is None])
    assert drawn.get(f"ensemble-{ensemble.name}") == "true"
    for fig in figs:
        image = matplotlib.image.imread(io.BytesIO(fig.png), format="png")
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert f"data:image/png;base64,{base64.b64encode(fig.png).decode()}" in page
        assert html.escape(fig.title) in page and html.escape(fig.caption) in page
    assert "no ensemble given" not in page and "no scores given" not in page


def test_the_held_out_table_is_recomputed_from_the_predictions(full_report, scores):
    held_out = sections(full_report[0])["scores"]
    (table,) = held_out.tables
    rows = {int(value(r["challenge"])): r for r in table.records()}
    frame = pd.read_parquet(scores)
    assert rows.keys() == {1, 2}
    by_hand = {}
    for challenge, row in rows.items():
        g = frame[frame["challenge"] == challenge]
        y, p = g["target"].to_numpy(), g["prediction"].to_numpy()
        rmse = float(np.sqrt(np.mean((p - y) ** 2)))
        by_hand[challenge] = rmse / float(np.std(y))
        assert value(row["windows"]) == len(g) and value(row["subjects"]) == 4
        assert shows(row["RMSE"], rmse), row
        assert shows(row["NRMSE"], by_hand[challenge]), row
        assert shows(row["R²"], 1.0 - by_hand[challenge] ** 2), row
        mean = g["mean_prediction"].to_numpy()
        assert shows(row["mean predictor NRMSE"], nrmse(y, mean)), row
    overall = number_in(" ".join(held_out.paragraphs), "overall 0.3·C1 + 0.7·C2:")
    assert overall == pytest.approx(0.3 * by_hand[1] + 0.7 * by_hand[2], abs=5.1e-5)


def test_the_ensemble_section_shows_its_description_s_numbers(
    full_report, ensemble, finished_experiment
):
    desc = json.loads((ensemble / "ensemble.json").read_text())
    scores = desc["scores"]
    part = sections(full_report[0])["ensembles"]
    assert part.subheadings == [ensemble.name]
    methods, members = part.tables
    rows = {r["method"].removesuffix(" (chosen)"): r for r in methods.records()}
    assert rows.keys() == scores["methods"].keys()
    chosen = [r["method"] for r in methods.records() if r["method"].endswith(" (chosen)")]
    assert chosen == [f"{desc['method']} (chosen)"]
    for name, m in scores["methods"].items():
        _assert_method_row(rows[name], m)
    shown = members.records()
    if desc["members"]:
        assert [r["member"] for r in shown] == [m["label"] for m in desc["members"]]
        for row, m in zip(shown, desc["members"], strict=True):
            assert shows(row["weight"], m["weight"]), row
    else:
        assert shown == [{"member": "none: the mean predictor ships", "weight": "—"}]
    _assert_ensemble_facts(part, desc, finished_experiment)


def _assert_method_row(row: dict[str, str], source: dict[str, Any]) -> None:
    for column, key in (
        ("nested NRMSE", "nested_nrmse"),
        ("95% interval", "nested_interval"),
        ("gain vs best single", "gain"),
        ("naive (in-sample)", "naive_nrmse"),
        ("alpha", "alpha"),
        ("members", "members_used"),
    ):
        assert shows(row[column], source[key]), (column, row[column], source[key])


def _assert_ensemble_facts(part: Section, desc: dict[str, Any], experiment: Path) -> None:
    facts, best = part.facts, desc["scores"]["best_single"]
    assert facts["challenge"] == str(desc["challenge"]) and facts["shipped"] == desc["shipped"]
    assert facts["best single trial"].startswith(f"{best['member']}: nested ")
    assert number_in(facts["best single trial"], ": nested") == pytest.approx(
        best["nested_nrmse"], abs=5.1e-5
    )
    # The mean predictor, nested, is each fold predicted by the other folds' mean target:
    # the same by hand from any trial's out-of-fold rows (every trial has every window).
    mean = number_in(facts["mean predictor"], "nested")
    assert mean == pytest.approx(desc["scores"]["mean_predictor_nested_nrmse"], abs=5.1e-5)
    pooled, _ = _mean_predictor_by_hand(oof_frame(_trial_dirs(experiment)[0], 2))
    assert mean == pytest.approx(pooled, abs=5.1e-5)


def test_the_leaderboard_and_mean_predictor_match_the_oof_files(finished_experiment, tmp_path):
    out, _ = build_report(ReportRequest((str(finished_experiment),), str(tmp_path / "r.html")))
    page = sections(out.read_text())
    assert page["c1-header"].facts["trials"] == "3 COMPLETE"
    (board,) = page["c1-leaderboard"].tables
    assert board.header[:5] == ["trial", "status", "val_nrmse", "oof_nrmse", "fold_oof_nrmse"]
    *trials, mean = board.records()
    assert [r["status"] for r in trials] == ["COMPLETE"] * 3
    ranked = [value(r["val_nrmse"]) for r in trials]
    assert ranked == sorted(ranked) and all(np.isfinite(ranked))  # best inner-validation first
    assert all(1e-4 <= value(lr) <= 1e-2 for lr in board.column("lr")[:-1])  # the space's range
    # Each trial's row holds its own pooled and per-fold scores, from its OOF files.
    by_hand = sorted(_trial_scores(oof_frame(d, 2)) for d in _trial_dirs(finished_experiment))
    by_row = sorted(trials, key=lambda r: value(r["oof_nrmse"]))
    for (pooled, per_fold), row in zip(by_hand, by_row, strict=True):
        assert shows(row["oof_nrmse"], pooled) and shows(row["fold_oof_nrmse"], per_fold), row
    # The mean predictor last, each fold predicted by the other fold's mean target.
    assert mean["trial"] == "mean predictor" and mean["val_nrmse"] == "—"
    pooled, per_fold = _mean_predictor_by_hand(oof_frame(_trial_dirs(finished_experiment)[0], 2))
    assert shows(mean["oof_nrmse"], pooled) and shows(mean["fold_oof_nrmse"], per_fold), mean
    assert page["Ensembles"].paragraphs == ["no ensemble given (--ensemble ENS_DIR)"]
    assert page["Held-out scores"].paragraphs == ["no scores given (--scores PRED.parquet)"]


def _trial_dirs(experiment: Path) -> list[Path]:
    return sorted((experiment / "folds").iterdir())


def _trial_scores(oof: pd.DataFrame) -> tuple[float, list[float]]:
    per_fold = [nrmse(g["target"], g["prediction"]) for _, g in oof.groupby("fold")]
    return nrmse(oof["target"], oof["prediction"]), per_fold


def _mean_predictor_by_hand(oof: pd.DataFrame) -> tuple[float, list[float]]:
    pred = np.empty(len(oof))
    for f in oof["fold"].unique():
        pred[oof["fold"] == f] = oof.loc[oof["fold"] != f, "target"].mean()
    per_fold = [
        nrmse(oof.loc[oof["fold"] == f, "target"], pred[oof["fold"] == f])
        for f in sorted(oof["fold"].unique())
    ]
    return nrmse(oof["target"], pred), per_fold


def test_a_stopped_trial_is_listed_not_plotted(finished_experiment, tmp_path):
    exp = tmp_path / "c1"
    shutil.copytree(finished_experiment, exp)
    stopped = sorted((exp / "folds").iterdir())[0]
    for f in stopped.glob("fold*/oof.parquet"):
        f.unlink()  # what ASHA leaves: a trial whose folds never wrote predictions
    out, _figs = build_report(ReportRequest((str(exp),), str(tmp_path / "r.html")))
    page = out.read_text()
    parts = sections(page)
    assert parts["c1-header"].facts["trials"] == "2 COMPLETE, 1 STOPPED"
    leaderboard = parts["c1-leaderboard"]
    assert "1 stopped trial(s) have no out-of-fold figures" in leaderboard.paragraphs[0]
    (row,) = [r for r in leaderboard.tables[0].records() if r["status"] == "STOPPED"]
    assert row["oof_nrmse"] == row["fold_oof_nrmse"] == "—"
    assert row["stopped_by"] == "asha"  # no race verdict in its folder
    assert _figures(page)["c1-folds"] == "true"


def test_missing_pieces_become_notes_not_errors(finished_experiment, tmp_path):
    exp = tmp_path / "c1"
    shutil.copytree(finished_experiment, exp)
    for f in exp.glob("folds/*/fold*/oof.parquet"):
        f.unlink()
    out, figs = build_report(ReportRequest((str(exp),), str(tmp_path / "r.html")))
    drawn = _figures(out.read_text())
    for key in ("folds", "predictions", "subject-errors"):
        assert drawn[f"c1-{key}"] == "false"
    assert all(f.note for f in figs if f.png is None)


def test_every_figure_has_a_title_labelled_axes_and_no_text_overlapping(
    finished_experiment, ensemble, tmp_path, monkeypatch
):
    seen = []
    original = report_figures.to_png

    def capture(fig):
        labels = [
            (
                ax.get_title() or fig.get_suptitle(),
                ax.get_xlabel() or fig.get_supxlabel(),
                ax.get_ylabel() or fig.get_supylabel(),  # one for a grid's shared axis
            )
            for ax in fig.axes
            if ax.get_label() != "<colorbar>"  # a colour bar carries one label only
        ]
        seen.append((labels, [str(o) for o in overlapping_text(fig)]))
        return original(fig)

    monkeypatch.setattr(report_figures, "to_png", capture)
    build_report(
        ReportRequest((str(finished_experiment),), str(tmp_path / "r.html"), (str(ensemble),))
    )
    assert len(seen) >= 8
    for axes, overlaps in seen:
        assert axes and all(title and x and y for title, x, y in axes), axes
        assert overlaps == [], (axes, overlaps)


def test_cli_writes_the_page_and_refuses_a_folder_that_is_no_experiment(
    finished_experiment, tmp_path, capsys
):
    out = tmp_path / "report.html"
    assert main(["report", "--experiment", str(finished_experiment), "--out", str(out)]) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out
    assert main(["report", "--experiment", str(tmp_path), "--out", str(tmp_path / "x.html")]) == 2
    assert "is not an eegtune tune experiment" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_a_trials_fold_epochs_are_the_pools_count_where_its_reports_carry_one():
    import optuna

    from eegtune.distributed.study import TRIAL_ID_ATTR
    from eegtune.reports.experiment_data import _trial_frame

    study = optuna.create_study()
    for trial_id, epochs in (("raced", 3), ("data_parallel", 2)):
        trial = study.ask()
        trial.set_user_attr(TRIAL_ID_ATTR, trial_id)
        for e in range(epochs):
            trial.report(1.0, e)
        study.tell(trial, 1.0)
    # 4 folds: the raced trial trained 3 epochs on 2 of them and never started the rest.
    frame = _trial_frame(study, max_epochs=10, n_folds=4, spent={"raced": 6})
    assert list(frame["fold_epochs"]) == [6, 2 * 4]

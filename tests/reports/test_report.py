"""`eegtune report` on a real finished experiment: the page, its numbers and its figures."""

from __future__ import annotations

import base64
import html
import io
import re
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from eegtune.cli import main
from eegtune.ensembles import EnsembleRequest, build_ensemble
from eegtune.metrics import nrmse
from eegtune.reports import ReportRequest, build_report
from eegtune.reports import figures as report_figures
from eegtune.training.train_func import oof_frame

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


def test_the_page_is_self_contained_and_every_figure_is_drawn(
    finished_experiment, ensemble, tmp_path
):
    scores = _scores_parquet(tmp_path / "pred.parquet")
    req = ReportRequest(
        (str(finished_experiment),), str(tmp_path / "r.html"), (str(ensemble),), str(scores)
    )
    out, figs = build_report(req)
    page = out.read_text()
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
    # The held-out table recomputed from the Parquet.
    frame = pd.read_parquet(scores)
    c1 = frame[frame["challenge"] == 1]
    assert f"{nrmse(c1['target'], c1['prediction']):.4f}" in page


def test_the_leaderboard_and_mean_predictor_match_the_oof_files(finished_experiment, tmp_path):
    out, _ = build_report(ReportRequest((str(finished_experiment),), str(tmp_path / "r.html")))
    page = out.read_text()
    for trial_dir in sorted((finished_experiment / "folds").iterdir()):
        oof = oof_frame(trial_dir, 2)
        assert f"{nrmse(oof['target'], oof['prediction']):.4f}" in page
    # Each fold predicted by the mean target of the other fold's rows, by hand.
    oof = oof_frame(next((finished_experiment / "folds").iterdir()), 2)
    pred = np.empty(len(oof))
    for f in (0, 1):
        pred[oof["fold"] == f] = oof.loc[oof["fold"] != f, "target"].mean()
    assert f"{nrmse(oof['target'], pred):.4f}" in page
    assert "mean predictor" in page
    assert "no ensemble given (--ensemble ENS_DIR)" in page
    assert "no scores given (--scores PRED.parquet)" in page
    assert "3 COMPLETE" in page


def test_a_stopped_trial_is_listed_not_plotted(finished_experiment, tmp_path):
    exp = tmp_path / "c1"
    shutil.copytree(finished_experiment, exp)
    stopped = sorted((exp / "folds").iterdir())[0]
    for f in stopped.glob("fold*/oof.parquet"):
        f.unlink()  # what ASHA leaves: a trial whose folds never wrote predictions
    out, _figs = build_report(ReportRequest((str(exp),), str(tmp_path / "r.html")))
    page = out.read_text()
    assert "2 COMPLETE, 1 STOPPED" in page
    assert "1 trial(s) ASHA stopped have no out-of-fold figures" in page
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


def test_every_figure_has_a_title_and_labelled_axes(
    finished_experiment, ensemble, tmp_path, monkeypatch
):
    seen = []
    original = report_figures.to_png

    def capture(fig):
        seen.append(
            [
                (ax.get_title() or fig.get_suptitle(), ax.get_xlabel(), ax.get_ylabel())
                for ax in fig.axes
                if ax.get_label() != "<colorbar>"  # a colour bar carries one label only
            ]
        )
        return original(fig)

    monkeypatch.setattr(report_figures, "to_png", capture)
    build_report(
        ReportRequest((str(finished_experiment),), str(tmp_path / "r.html"), (str(ensemble),))
    )
    assert len(seen) >= 8
    for axes in seen:
        assert axes and all(title and x and y for title, x, y in axes), axes


def test_cli_writes_the_page_and_refuses_a_folder_that_is_no_experiment(
    finished_experiment, tmp_path, capsys
):
    out = tmp_path / "report.html"
    assert main(["report", "--experiment", str(finished_experiment), "--out", str(out)]) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out
    assert main(["report", "--experiment", str(tmp_path), "--out", str(tmp_path / "x.html")]) == 2
    assert "is not an eegtune tune experiment" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_each_slice_panel_is_labelled_with_its_own_parameter(monkeypatch):
    import optuna

    from eegtune.reports.experiment_data import ExperimentData
    from eegtune.reports.search_figures import _focus

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(6):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-5, 1e-3, log=True)
        ratio = trial.suggest_float("model.head_ratio", 0.02, 0.5, log=True)
        mult = trial.suggest_float("lr_mult.attention", 0.1, 10.0, log=True)
        study.tell(trial, lr * 100 + ratio + mult)
    columns = ["trial", "status", "val_nrmse", "oof_nrmse", "fold_oof_nrmse", "trial_dir"]
    data = ExperimentData(
        name="x",
        location="",
        settings={"space": "sparse_attention", "seed": 0},
        study=study,
        table=pd.DataFrame(columns=[*columns, "lr", "model.head_ratio", "lr_mult.attention"]),
        trials=pd.DataFrame(),
    )
    limits = {}
    original = report_figures.to_png

    def capture(fig):
        limits.update({ax.get_xlabel(): ax.get_xlim() for ax in fig.axes})
        return original(fig)

    monkeypatch.setattr(report_figures, "to_png", capture)
    assert _focus(data).png is not None
    # Each axis holds its own parameter's values, whatever order Optuna draws them in.
    assert limits["learning rate"][1] < 0.01
    assert limits["head ratio (attention groups per token)"][0] > 0.01
    assert limits["attention group's rate / learning rate"][1] > 1.0

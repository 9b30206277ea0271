"""`eegtune ensemble` on a real finished experiment: the table, the folder, the refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from eegtune.cli import main
from eegtune.ensembles import METHODS, load_ensemble

# The shared experiment fixture is built inside the first test that asks for it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _oof(trial_dir: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(trial_dir / f"fold{k}" / "oof.parquet") for k in (0, 1)])


def _trial_dirs(exp: Path) -> list[Path]:
    return sorted(p for p in (exp / "folds").iterdir() if p.is_dir())


def _nrmse(y, p) -> float:
    y, p = np.asarray(y, float), np.asarray(p, float)
    return float(np.sqrt(np.mean((y - p) ** 2)) / np.std(y))


def test_cli_scores_every_method_and_writes_a_loadable_predictor(
    finished_experiment, tmp_path, capsys
):
    out = tmp_path / "ens"
    argv = ["ensemble", "--experiment", str(finished_experiment), "--challenge", "1"]
    assert main([*argv, "--method", "weighted", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in (*METHODS, "nested NRMSE", "naive (in-sample)", "best single trial:"):
        assert text in printed
    assert "a member is a trial" in printed and "mean of its 2 fold models" in printed

    desc = json.loads((out / "ensemble.json").read_text())
    assert desc["n_candidates"] == 3 and desc["method"] == "weighted"
    assert set(desc["scores"]["methods"]) == set(METHODS)
    for m in desc["scores"]["methods"].values():
        lo, hi = m["nested_interval"]
        assert lo < hi and m["nested_nrmse"] > 0
        assert 0.0 <= m["alpha"] <= 1.0

    # The baselines, recomputed from the OOF files alone.
    oofs = [_oof(d) for d in _trial_dirs(finished_experiment)]
    best = min(_nrmse(o["target"], o["prediction"]) for o in oofs)
    assert desc["scores"]["best_single"]["oof_nrmse"] == pytest.approx(best, rel=1e-9)
    rows = oofs[0].assign(target=oofs[0]["target"].astype(np.float64))
    by_fold = rows.groupby("fold")["target"]
    other_mean = {f: rows.loc[rows["fold"] != f, "target"].mean() for f in by_fold.groups}
    mean_pred = rows["fold"].map(other_mean)
    assert desc["scores"]["mean_predictor_nested_nrmse"] == pytest.approx(
        _nrmse(rows["target"], mean_pred), rel=1e-9
    )

    # What shipped loads as one module: deterministic, batch size 1 as in a batch.
    model = load_ensemble(out)
    x = torch.randn(3, 129, 200, generator=torch.Generator().manual_seed(0)) * 10
    with torch.no_grad():
        y = model(x)
        assert y.shape == (3, 1) and torch.equal(y, model(x))
        assert torch.allclose(model(x[1:2]), y[1:2], atol=1e-6)
    if not desc["members"]:  # the guard shipped the mean predictor
        assert "guard:" in printed
        assert torch.allclose(y, torch.full((3, 1), desc["centre"]))


@pytest.fixture
def experiment_copy(finished_experiment, tmp_path) -> Path:
    return Path(shutil.copytree(finished_experiment, tmp_path / "runs" / "c1"))


def _damage(kind: str, exp: Path, tmp_path: Path) -> tuple[list[str], str]:
    """Damage a copy of the experiment; return extra CLI args and the expected message."""
    trials = _trial_dirs(exp)
    if kind == "other folds":
        other = Path(shutil.copytree(exp, tmp_path / "runs2" / "c1_seed1"))
        saved = json.loads((other / "tune_job.json").read_text())
        (other / "tune_job.json").write_text(json.dumps({**saved, "seed": 1}))
        return ["--experiment", str(other)], "do not share their folds (seed 0 vs 1)"
    if kind == "other rows":
        f = trials[-1] / "fold0" / "oof.parquet"
        pd.read_parquet(f).iloc[1:].to_parquet(f, index=False)
        return [], "different out-of-fold rows"
    if kind == "no complete trial":
        for t in trials:
            (t / "fold1" / "oof.parquet").unlink()
        return [], "has no COMPLETE trial"
    if kind == "missing checkpoint":
        (trials[0] / "fold1" / "checkpoint.pt").unlink()
        return [], f"missing fold checkpoint(s) ['{trials[0] / 'fold1' / 'checkpoint.pt'}']"
    if kind == "other challenge":
        return ["--challenge", "2"], "is a Challenge 1 experiment, not Challenge 2"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["other folds", "other rows", "no complete trial", "missing checkpoint", "other challenge"],
)
def test_refusals_exit_2_name_the_cause_and_leave_out_untouched(
    kind, experiment_copy, tmp_path, capsys
):
    out = tmp_path / "ens"
    base = ["ensemble", "--experiment", str(experiment_copy), "--out", str(out)]
    assert main([*base, "--challenge", "1"]) == 0  # a good ensemble already in --out
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()

    extra, message = _damage(kind, experiment_copy, tmp_path)
    argv = [*base, *extra] if "--challenge" in extra else [*base, "--challenge", "1", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".ens")]


def test_a_refused_first_build_leaves_no_folder(experiment_copy, tmp_path, capsys):
    _damage("missing checkpoint", experiment_copy, tmp_path)
    out = tmp_path / "ens"
    argv = ["ensemble", "--experiment", str(experiment_copy), "--challenge", "1"]
    assert main([*argv, "--out", str(out)]) == 2
    assert not out.exists() and not list(tmp_path.glob(".ens*"))


def test_members_that_are_noise_trip_the_guard_in_the_command(experiment_copy, tmp_path, capsys):
    rng = np.random.default_rng(0)
    for trial in _trial_dirs(experiment_copy):
        for k in (0, 1):
            f = trial / f"fold{k}" / "oof.parquet"
            frame = pd.read_parquet(f)
            noise = frame["target"].mean() + rng.normal(0, 2 * frame["target"].std(), len(frame))
            frame.assign(prediction=noise.astype(np.float32)).to_parquet(f, index=False)
    out = tmp_path / "ens"
    argv = ["ensemble", "--experiment", str(experiment_copy), "--challenge", "1"]
    assert main([*argv, "--method", "greedy", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    desc = json.loads((out / "ensemble.json").read_text())
    assert desc["shipped"] != "greedy" and desc["guard"].startswith("guard: greedy's nested")
    assert desc["guard"] in printed

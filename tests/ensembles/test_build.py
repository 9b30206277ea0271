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
from eegtune.models import model_from_config

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
    captured = capsys.readouterr()
    printed, logged = captured.out, captured.err  # the table; the log lines (stderr)
    for text in (*METHODS, "nested NRMSE", "naive (in-sample)", "best single trial:"):
        assert text in printed
    assert "a member is a trial" in logged and "mean of its 2 fold models" in logged

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

    # Members that are noise lose to the mean predictor: it ships, with no member, α 0 and
    # the targets' mean as centre, and the loaded module predicts that constant.
    y, _ = _aligned_oof(experiment_copy)
    assert desc["shipped"] == "mean predictor"
    assert desc["guard"].endswith(
        f"the mean predictor ({desc['scores']['mean_predictor_nested_nrmse']:.4f})"
    )
    _assert_ships(out, members={}, alpha=0.0, centre=float(y.mean()))


# --- what ships, against the combination worked out from the OOF files ---------------------


def _aligned_oof(exp: Path) -> tuple[np.ndarray, dict[Path, np.ndarray]]:
    """Targets and each trial's predictions (float64 of the stored float32) from the OOF
    files alone, every trial's rows in one order."""
    key = ["subject", "recording", "window_index"]
    frames = {
        d: _oof(d).sort_values(key, kind="stable").reset_index(drop=True) for d in _trial_dirs(exp)
    }
    first = next(iter(frames.values()))
    for frame in frames.values():
        pd.testing.assert_frame_equal(frame[[*key, "fold"]], first[[*key, "fold"]])
    y = first["target"].to_numpy(dtype=np.float64)
    return y, {d: f["prediction"].to_numpy(dtype=np.float64) for d, f in frames.items()}


def _set_oof_predictions(exp: Path, noise_scale: list[float], seed: int) -> None:
    """Each trial's OOF predictions become target + noise of std ``scale × std(target)``."""
    rng = np.random.default_rng(seed)
    for trial, scale in zip(_trial_dirs(exp), noise_scale, strict=True):
        for k in (0, 1):
            f = trial / f"fold{k}" / "oof.parquet"
            frame = pd.read_parquet(f)
            noise = rng.normal(0, scale * frame["target"].std(), len(frame))
            frame.assign(prediction=(frame["target"] + noise).astype(np.float32)).to_parquet(
                f, index=False
            )


def _by_hand_alpha(y: np.ndarray, p: np.ndarray) -> float:
    """Least-squares slope of y − c on p − c through the origin (c the targets' mean), in
    [0, 1]."""
    c = y.mean()
    return float(np.clip(np.sum((y - c) * (p - c)) / np.sum((p - c) ** 2), 0.0, 1.0))


def _fold_models(trial_dir: Path) -> list[torch.nn.Module]:
    models = []
    for k in (0, 1):
        ckpt = torch.load(trial_dir / f"fold{k}" / "checkpoint.pt", weights_only=True)
        model = model_from_config(ckpt["model_config"])
        model.load_state_dict(ckpt["state_dict"])
        models.append(model.eval())
    return models


def _assert_ships(out: Path, members: dict[Path, float], alpha: float, centre: float) -> None:
    """ensemble.json holds exactly ``members`` (trial folder → weight), α and the centre,
    and load_ensemble predicts centre + α(Σ weight · mean of the trial's fold models − c),
    computed here from the trials' own checkpoints."""
    desc = json.loads((out / "ensemble.json").read_text())
    shipped = {Path(m["trial_dir"]): m["weight"] for m in desc["members"]}
    assert shipped.keys() == members.keys()
    for trial, weight in members.items():
        assert shipped[trial] == pytest.approx(weight, rel=1e-9, abs=1e-12), trial
    assert desc["alpha"] == pytest.approx(alpha, rel=1e-9, abs=1e-12)
    assert desc["centre"] == pytest.approx(centre, rel=1e-12)
    assert len(desc["fold_models"]) == len(members)
    assert all(len(folds) == 2 for folds in desc["fold_models"])

    model = load_ensemble(out)
    x = torch.randn(4, 129, 200, generator=torch.Generator().manual_seed(1)) * 10
    with torch.no_grad():
        got = model(x).double()
        ens = torch.zeros(4, 1, dtype=torch.float64)
        for trial, weight in members.items():
            outs = torch.stack([m(x).double() for m in _fold_models(trial)])
            ens += weight * outs.mean(dim=0)
    want = centre + alpha * (ens - centre) if members else torch.full((4, 1), centre)
    assert got.shape == (4, 1)
    torch.testing.assert_close(got, want.double(), rtol=1e-5, atol=1e-5)


def test_what_ships_is_the_method_when_the_guard_does_not_trip(experiment_copy, tmp_path, capsys):
    # Two good trials with independent errors and one poor one: `mean` of the top 2 beats
    # the best single trial and the mean predictor, so it ships as fitted on every row.
    _set_oof_predictions(experiment_copy, [0.2, 0.9, 0.25], seed=1)
    trials = _trial_dirs(experiment_copy)
    y, preds = _aligned_oof(experiment_copy)
    out = tmp_path / "ens"
    argv = ["ensemble", "--experiment", str(experiment_copy), "--challenge", "1"]
    assert main([*argv, "--method", "mean", "--top-k", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    desc = json.loads((out / "ensemble.json").read_text())
    assert desc["shipped"] == "mean" and desc["guard"] == ""
    assert "guard:" not in printed

    good = [trials[0], trials[2]]
    alpha = _by_hand_alpha(y, 0.5 * preds[good[0]] + 0.5 * preds[good[1]])
    assert 0.5 < alpha < 1.0  # shrunk, so α is pinned, not a clip
    assert desc["scores"]["methods"]["mean"]["alpha"] == pytest.approx(alpha, rel=1e-9)
    _assert_ships(out, members={t: 0.5 for t in good}, alpha=alpha, centre=float(y.mean()))


def test_what_ships_is_the_best_scored_fallback_when_the_guard_trips(
    experiment_copy, tmp_path, capsys
):
    # One good trial and two noisy ones: the mean of all three loses to that trial, which
    # ships as it is (weight 1, α 1) instead.
    _set_oof_predictions(experiment_copy, [3.0, 0.2, 3.5], seed=2)
    trials = _trial_dirs(experiment_copy)
    y, _ = _aligned_oof(experiment_copy)
    out = tmp_path / "ens"
    argv = ["ensemble", "--experiment", str(experiment_copy), "--challenge", "1"]
    assert main([*argv, "--method", "mean", "--top-k", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    desc = json.loads((out / "ensemble.json").read_text())
    scores = desc["scores"]
    # The fallback is the best of everything scored nested: the other methods with their
    # shrinkage, the best single trial as chosen nested, and the mean predictor.
    scored = {
        "best single trial": scores["best_single"]["nested_nrmse"],
        "mean predictor": scores["mean_predictor_nested_nrmse"],
        **{f"{m} (nested, with its shrinkage)": v["nested_nrmse"]
           for m, v in scores["methods"].items() if m != "mean"},
    }  # fmt: skip
    assert desc["shipped"] == min(scored, key=scored.get)
    assert desc["shipped"] in ("best single trial", "best (nested, with its shrinkage)")
    assert desc["guard"].startswith("guard: mean's nested") and desc["guard"] in printed
    assert scores["methods"]["mean"]["members_used"] == 3  # what was refused
    # The good trial ships alone: as it is, or with best's nested shrinkage.
    alpha = 1.0 if desc["shipped"] == "best single trial" else scores["methods"]["best"]["alpha"]
    _assert_ships(out, members={trials[1]: 1.0}, alpha=alpha, centre=float(y.mean()))

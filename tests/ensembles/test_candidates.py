"""An ensemble's candidates: experiments pooled only over the same folds, members' OOF rows
lined up or refused, and a member's missing files named."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eegtune.distributed.experiment import Experiment
from eegtune.ensembles.candidates import Candidate, check_same_folds, oof_rows
from eegtune.ensembles.errors import EnsembleError
from eegtune.ensembles.finalists import seed_bags, seed_spread
from eegtune.training.run_files import CHECKPOINT, OOF


def _exp(path: Path, **settings) -> Experiment:
    return Experiment(str(path), path, {"challenge": 1, "n_folds": 2, "seed": 0, **settings})


def _member(tmp_path: Path, name: str, rows: pd.DataFrame, shift: float) -> Candidate:
    run = tmp_path / name
    for k, part in rows.groupby("fold"):
        (run / f"fold{k}").mkdir(parents=True)
        part.assign(prediction=part["target"] + shift).to_parquet(run / f"fold{k}" / OOF)
    return Candidate("e", int(shift * 10), 0, run, 2, 0.5, {})


def _rows(n: int = 8) -> pd.DataFrame:
    return pd.DataFrame({
        "subject": [f"s{i % 4}" for i in range(n)], "recording": "r", "window_index": range(n),
        "release": "R1", "target": np.linspace(0.3, 1.0, n), "fold": [i % 2 for i in range(n)],
    })  # fmt: skip


def test_experiments_on_other_folds_or_another_challenge_are_refused(tmp_path):
    a = _exp(tmp_path / "a")
    check_same_folds([a, _exp(tmp_path / "b")], challenge=1)
    with pytest.raises(EnsembleError, match="n_folds 2 vs 3"):
        check_same_folds([a, _exp(tmp_path / "b", n_folds=3)], challenge=1)
    with pytest.raises(EnsembleError, match="seed 0 vs 1"):
        check_same_folds([a, _exp(tmp_path / "b", seed=1)], challenge=1)
    with pytest.raises(EnsembleError, match="Challenge 1 experiment, not Challenge 2"):
        check_same_folds([a], challenge=2)


def test_members_oof_rows_are_lined_up_by_window(tmp_path):
    rows = _rows()
    first, second = _member(tmp_path, "m1", rows, 0.1), _member(tmp_path, "m2", rows, 0.2)
    lined, ids = oof_rows([first, second])
    order = ids.index.to_numpy()
    assert np.allclose(lined.preds[:, 1] - lined.preds[:, 0], 0.1)
    assert np.array_equal(lined.target, ids["target"].to_numpy())
    assert list(ids.columns) == ["subject", "recording", "window_index", "release", "target",
                                 "fold"] and len(order) == len(rows)  # fmt: skip


def test_a_member_trained_on_other_folds_is_refused(tmp_path):
    rows = _rows()
    moved = rows.assign(fold=1 - rows["fold"])  # every window in the other fold
    with pytest.raises(EnsembleError, match="different out-of-fold rows"):
        oof_rows([_member(tmp_path, "m1", rows, 0.1), _member(tmp_path, "m2", moved, 0.2)])


def test_a_members_missing_checkpoint_is_named(tmp_path):
    member = _member(tmp_path, "m1", _rows(), 0.1)
    with pytest.raises(EnsembleError, match=r"fold0/checkpoint\.pt"):
        member.checkpoints()


def _bag(tmp_path: Path, rows: pd.DataFrame, shifts: list[float]) -> Candidate:
    runs = tuple(
        dataclasses.replace(_member(tmp_path, f"seed{s}", rows, shift), seed=s)
        for s, shift in enumerate(shifts)
    )
    return dataclasses.replace(runs[0], parts=runs)


def test_a_seed_bag_predicts_the_mean_of_its_runs_and_holds_every_runs_fold_models(tmp_path):
    rows = _rows()
    # The mean shift, 0.3, is none of the runs' own (nor their median, 0.4).
    bag = _bag(tmp_path, rows, [0.1, 0.4, 0.4])
    assert bag.label == "e/trial 1 seeds 0+1+2"
    frame = bag.oof()
    by_hand = np.mean([rows["target"].to_numpy() + s for s in (0.1, 0.4, 0.4)], axis=0)
    order = frame["window_index"].to_numpy()
    assert np.allclose(frame["prediction"].to_numpy(), by_hand[order], atol=1e-6)
    assert np.array_equal(frame["fold"].to_numpy(), rows["fold"].to_numpy()[order])
    # Lined up beside a single trial, the bag is one more column.
    lined, _ = oof_rows([_member(tmp_path, "single", rows, 0.5), bag])
    assert np.allclose(lined.preds[:, 0] - lined.preds[:, 1], 0.5 - 0.3, atol=1e-6)

    for run in bag.parts:  # K fold models per run, runs in seed order
        for k in (0, 1):
            (run.trial_dir / f"fold{k}" / CHECKPOINT).write_bytes(b"")
    files = bag.checkpoints()
    assert [f.parent.parent.name for f in files] == ["seed0", "seed0", "seed1", "seed1",
                                                     "seed2", "seed2"]  # fmt: skip
    assert [f.parent.name for f in files] == ["fold0", "fold1"] * 3
    described = json.loads(json.dumps(bag.to_dict()))  # what ensemble.json holds
    assert described["parts"][2]["trial_dir"] == str(tmp_path / "seed2")
    assert [p["seed"] for p in described["parts"]] == [0, 1, 2]
    (bag.parts[1].trial_dir / "fold1" / CHECKPOINT).unlink()
    with pytest.raises(EnsembleError, match=r"seeds 0\+1\+2: missing .*seed1/fold1/checkpoint"):
        bag.checkpoints()


def test_a_seed_bag_whose_runs_used_other_folds_is_refused(tmp_path):
    rows = _rows()
    bag = _bag(tmp_path, rows, [0.1, 0.2])
    moved = rows.assign(fold=1 - rows["fold"])
    other = _member(tmp_path, "moved", moved, 0.3)
    bad = dataclasses.replace(bag, parts=(*bag.parts, other))
    with pytest.raises(EnsembleError, match=r"trial 1 seeds 0\+1\+0: its seed runs have different"):
        bad.oof()


def test_seed_bags_pair_each_finalist_with_its_own_retrainings(tmp_path):
    rows = _rows()
    y = rows["target"].to_numpy()

    def run(exp: str, trial: int, seed: int, shift: float) -> Candidate:
        member = _member(tmp_path, f"{exp}_t{trial}_s{seed}", rows, shift)
        score = float(np.sqrt(np.mean(shift**2)) / np.std(y))  # as the trial table has it
        return dataclasses.replace(member, experiment=exp, trial=trial, seed=seed, oof_nrmse=score)

    # Two experiments share trial number 3; trial 5 has no retraining.
    finalists = [run("a", 3, 0, 0.2), run("b", 3, 0, -0.3), run("a", 5, 0, 0.1)]
    retrained = [run("b", 3, 1, 0.1), run("a", 3, 1, 0.6), run("a", 3, 2, 0.4)]
    bags = seed_bags(finalists, retrained)
    assert [b.label for b in bags] == ["a/trial 3 seeds 0+1+2", "b/trial 3 seeds 0+1"]
    # Each bag's score is the pooled NRMSE of its mean prediction: shifts 0.4 and -0.1.
    for bag, shift in zip(bags, (0.4, -0.1), strict=True):
        want = np.sqrt(np.mean(shift**2)) / np.std(y)
        assert bag.oof_nrmse == pytest.approx(want, rel=1e-5)
    spread = seed_spread([*finalists, *bags])
    assert list(spread) == ["a/trial 3", "b/trial 3"]
    runs = [np.sqrt(np.mean(s**2)) / np.std(y) for s in (0.2, 0.6, 0.4)]
    assert spread["a/trial 3"]["oof_nrmse"] == pytest.approx(runs, rel=1e-9)
    assert spread["a/trial 3"]["seeds"] == [0, 1, 2]
    assert spread["a/trial 3"]["std"] == pytest.approx(np.std(runs, ddof=1), rel=1e-5)
    assert spread["a/trial 3"]["bag_oof_nrmse"] == bags[0].oof_nrmse

"""Fold racing on constructed per-fold results: who is stopped, who is not, and why."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from eegtune.distributed.fold_race import (
    FoldRacer,
    RaceBoard,
    paired_test,
    race_rungs,
    read_verdict,
    write_verdict,
)
from eegtune.metrics import pooled_nrmse


def sums(rmse: float, n: int = 100, mean: float = 1.0, std: float = 0.5) -> dict[str, float]:
    """Error sums of ``n`` windows whose targets have ``mean`` and ``std`` and whose
    predictions are off by ``rmse``."""
    return {
        "n": float(n),
        "sse": rmse**2 * n,
        "sum_y": mean * n,
        "sum_y2": (std**2 + mean**2) * n,
    }


def board_with(leader: list[float], confidence: float = 0.95) -> RaceBoard:
    board = RaceBoard(confidence)
    for k, e in enumerate(leader):
        board.post("leader", 3, k, sums(e))
    return board


def post_all(board: RaceBoard, trial: str, errors: list[float], rung: int = 3):
    verdict = None
    for k, e in enumerate(errors):
        verdict = board.post(trial, rung, k, sums(e))
    return verdict


LEADER = [0.40, 0.55, 0.35, 0.60, 0.45]


def test_a_trial_worse_on_every_fold_is_stopped():
    board = board_with(LEADER)
    worse = [e * r for e, r in zip(LEADER, (1.10, 1.14, 1.08, 1.12, 1.11), strict=True)]
    verdict = post_all(board, "worse", worse)
    assert verdict.stop and verdict.leader == "leader"
    assert verdict.folds == (0, 1, 2, 3, 4)
    assert verdict.p_value < 0.05
    assert math.exp(verdict.log_ratio) == pytest.approx(
        math.exp(np.mean(np.log([1.10, 1.14, 1.08, 1.12, 1.11])))
    )


def test_a_trial_worse_on_one_fold_only_is_not_stopped():
    board = board_with(LEADER)
    # Much worse on fold 2, as good elsewhere: worse on average, but by one odd fold.
    one_odd = [*LEADER[:2], LEADER[2] * 1.6, *LEADER[3:]]
    verdict = post_all(board, "odd", one_odd)
    assert verdict.log_ratio > 0.05  # worse on average ...
    assert not verdict.stop  # ... and kept
    assert verdict.p_value > 0.05


def test_ties_are_not_stopped():
    board = board_with(LEADER)
    assert not post_all(board, "tie", list(LEADER)).stop
    # Worse by the same tiny ratio on every fold (no spread: p = 0) is still a tie.
    assert not post_all(board, "near", [e * 1.005 for e in LEADER]).stop


def test_better_trials_are_never_stopped_and_become_the_leader():
    board = board_with(LEADER)
    better = [e * 0.8 for e in LEADER]
    assert not post_all(board, "better", better).stop
    # Behind the new leader, ahead of the old one: second of three, which ASHA keeps.
    verdict = post_all(board, "second", [e * 0.9 for e in LEADER])
    assert verdict.leader == "better" and verdict.bar == "leader" and not verdict.stop


def _rivals(keep: float | None = 0.5, names: str = "abcd") -> RaceBoard:
    """Rivals a, b, c, d (or ``names``), each 10% worse than the one before on every
    fold (``keep`` None: the board's default)."""
    board = RaceBoard(0.95) if keep is None else RaceBoard(0.95, keep=keep)
    for i, name in enumerate(names):
        for k, e in enumerate(LEADER):
            board.post(name, 3, k, sums(e * 1.1**i))
    return board


def test_a_trial_is_stopped_only_behind_ashas_cut():
    # With 4 rivals ASHA keeps the top ⌈5/2⌉ = 3 of 5: c (1.21× a) is the bar.
    inside = post_all(_rivals(), "t", [e * 1.15 for e in LEADER])
    assert inside.leader == "a" and inside.bar == "c" and inside.bar_rank == 3
    assert not inside.stop  # consistently behind a and b, but inside the cut
    ratios = (1.28, 1.31, 1.29, 1.30, 1.32)
    behind = post_all(_rivals(), "t", [e * r for e, r in zip(LEADER, ratios, strict=True)])
    assert behind.stop and behind.bar == "c" and behind.p_value < 0.05
    assert math.exp(behind.log_ratio) == pytest.approx(
        math.exp(np.mean(np.log(ratios))) / 1.21, rel=1e-9
    )
    assert "against c (no. 3 of 4 rivals) on folds [0, 1, 2, 3, 4]" in behind.reason()
    # keep 0: the leader is the bar, and trailing it consistently is enough.
    led = post_all(_rivals(keep=0.0), "t", [e * 1.15 for e in LEADER])
    assert led.bar == "a" and led.bar_rank == 1 and led.stop
    # keep 1: only a trial behind every rival can be stopped.
    assert post_all(_rivals(keep=1.0), "t", [e * 1.15 for e in LEADER]).bar == "d"


def test_the_default_bar_is_the_rival_after_the_best_quarter():
    # 1 + ⌈3 · 1/4⌉ = 2: b, between the leader (keep 0) and ASHA's cut (c, keep 0.5).
    behind_b = post_all(_rivals(None), "t", [e * 1.15 for e in LEADER])
    assert behind_b.bar == "b" and behind_b.bar_rank == 2 and behind_b.stop
    assert "against b (no. 2 of 4 rivals)" in behind_b.reason()
    # Behind the leader alone, it is not stopped.
    ahead_of_b = post_all(_rivals(None), "t", [e * 1.05 for e in LEADER])
    assert ahead_of_b.bar == "b" and not ahead_of_b.stop
    # Five rivals: 1 + ⌈4 · 1/4⌉ = 2 still (a keep above 1/4 would make it c), nine: 3.
    assert post_all(_rivals(None, "abcde"), "t", [e * 1.15 for e in LEADER]).bar == "b"
    assert post_all(_rivals(None, "abcdefghi"), "t", [e * 2 for e in LEADER]).bar == "c"


def test_the_first_trial_has_no_rival():
    board = RaceBoard()
    verdict = board.post("first", 3, 0, sums(0.5))
    assert verdict.leader is None and not verdict.stop
    assert "no rival" in verdict.reason()


def test_only_rivals_with_the_same_folds_at_the_same_rung_count():
    board = RaceBoard(confidence=0.5)
    board.post("other_rung", 6, 0, sums(0.1))
    board.post("other_rung", 6, 1, sums(0.1))
    board.post("one_fold", 3, 0, sums(0.1))  # has fold 0 only at rung 3
    board.post("t", 3, 0, sums(0.5))
    verdict = board.post("t", 3, 1, sums(0.5))
    assert verdict.leader is None and not verdict.stop


def test_two_folds_are_enough_at_a_low_confidence_but_not_a_high_one():
    loose, strict = board_with(LEADER[:2], 0.5), board_with(LEADER[:2], 0.99)
    worse = [LEADER[0] * 1.3, LEADER[1] * 1.1]
    assert post_all(loose, "t", worse).stop
    assert not post_all(strict, "t", worse).stop


def test_paired_test_is_scipys_one_sided_paired_t_on_log_errors():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(0.3, 0.9, size=5)
        b = a * rng.uniform(0.9, 1.3, size=5)
        mean, p = paired_test(b, a)
        expected = stats.ttest_rel(np.log(b), np.log(a), alternative="greater").pvalue
        if mean > 0:
            assert p == pytest.approx(expected, rel=1e-9)
        else:
            assert p == 1.0
    assert paired_test([0.5], [0.4]) == (pytest.approx(math.log(1.25)), 1.0)  # one pair


def test_the_estimate_corrects_a_stopped_trials_figure_by_the_leaders_folds():
    board = board_with([0.2, 0.2, 0.8, 0.8])  # folds 0, 1 are the easy ones
    board.post("t", 3, 0, sums(0.3))
    verdict = board.post("t", 3, 1, sums(0.3))
    own = pooled_nrmse([sums(0.3), sums(0.3)])
    leader_all = pooled_nrmse([sums(e) for e in (0.2, 0.2, 0.8, 0.8)])
    leader_here = pooled_nrmse([sums(0.2), sums(0.2)])
    assert verdict.estimate == pytest.approx(own * leader_all / leader_here)
    assert verdict.estimate > own  # its own figure, on easy folds alone, flattered it


def test_race_rungs_are_ashas_before_the_last_epoch():
    assert race_rungs(3, 12) == [3, 6]
    assert race_rungs(3, 13) == [3, 6, 12]
    assert race_rungs(1, 4) == [1, 2]
    assert race_rungs(5, 5) == []


def _epoch(e: int, rmse: float) -> dict:
    return {
        "epoch": e,
        "inner_val_rmse": rmse,
        **{f"inner_val_{k}": v for k, v in sums(rmse).items()},
    }


def test_the_racer_posts_each_folds_best_so_far_once_per_rung():
    board = board_with([0.5, 0.5])
    racer = FoldRacer(board, "t", [2, 4])
    epochs = [{0: _epoch(0, 0.9)}, {}]
    assert racer.check(epochs, [False, False]) is None
    assert racer.posted == set()  # fold 0 has one epoch of two: not at rung 2 yet
    epochs[0][1] = _epoch(1, 0.95)  # worse than its epoch 0: the best so far is 0.9
    assert racer.check(epochs, [False, False]) is None
    assert racer.posted == {(2, 0)}
    assert board.scores[2]["t"][0]["sse"] == pytest.approx(sums(0.9)["sse"])
    # Fold 1 stopped on patience after one epoch: it races at every rung with its best.
    epochs[1][0] = _epoch(0, 0.8)
    board.post("leader", 2, 1, sums(0.5))
    board.post("leader", 2, 0, sums(0.5))
    verdict = racer.check(epochs, [False, True])
    assert verdict is not None and verdict.stop and verdict.rung == 2
    assert verdict.folds == (0, 1)


def test_a_verdict_is_saved_with_its_reason(tmp_path):
    board = board_with(LEADER)
    verdict = post_all(board, "worse", [e * 1.2 for e in LEADER])
    write_verdict(str(tmp_path), verdict)
    saved = read_verdict(str(tmp_path))
    assert saved["stop"] and saved["leader"] == "leader" and saved["folds"] == [0, 1, 2, 3, 4]
    assert "+20.0% error against leader on folds [0, 1, 2, 3, 4]" in saved["reason"]
    assert read_verdict(str(tmp_path / "none")) is None


def test_confidence_and_keep_are_checked():
    with pytest.raises(ValueError, match="confidence"):
        RaceBoard(confidence=1.0)
    with pytest.raises(ValueError, match="keep"):
        RaceBoard(keep=1.5)


def test_a_diverged_fold_neither_leads_nor_is_judged():
    nan = {"n": 100.0, "sse": float("nan"), "sum_y": 100.0, "sum_y2": 125.0}
    board = RaceBoard(confidence=0.5)
    board.post("diverged", 3, 0, nan)
    board.post("diverged", 3, 1, sums(0.1))
    # The diverged trial is no leader: the next trial has no rival and is kept.
    assert post_all(board, "t", [0.9, 0.9]).leader is None
    # Nor is it judged (its NaN fold would make every figure NaN): ASHA deals with it.
    assert not board.judge("diverged", 3).stop


def test_a_saved_board_keeps_the_earlier_runs_trials_in_the_race(tmp_path):
    record = str(tmp_path / "race_board")
    first_run = RaceBoard(0.95, record=record)
    for k, e in enumerate(LEADER):
        first_run.post("leader", 3, k, sums(e))
    # A resumed search's board: the earlier leader is still there to lose against.
    resumed = RaceBoard(0.95, record=record)
    assert resumed.scores == first_run.scores
    worse = [e * r for e, r in zip(LEADER, (1.10, 1.14, 1.08, 1.12, 1.11), strict=True)]
    verdict = post_all(resumed, "worse", worse)
    assert verdict.stop and verdict.leader == "leader"
    # Without the record the new trial would have had no rival at all.
    assert not post_all(RaceBoard(0.95), "worse", worse).stop
    # One file per trial, each holding only its own posts.
    assert sorted(p.name for p in (tmp_path / "race_board").iterdir()) == [
        "leader.json",
        "worse.json",
    ]
    assert RaceBoard(0.95, record=record).scores == resumed.scores


@pytest.mark.parametrize(
    ("text", "why"),
    [("[1, 2", "JSONDecodeError"), ("[1, 2]", "AttributeError"), ('{"3": {"0": {}}}', "sums")],
)
def test_an_unreadable_board_file_is_named(tmp_path, text, why):
    (tmp_path / "race_board").mkdir()
    (tmp_path / "race_board" / "t.json").write_text(text)
    with pytest.raises(ValueError, match=rf"t\.json: not a race board file .*{why}"):
        RaceBoard(record=str(tmp_path / "race_board"))


def test_a_board_that_cannot_save_keeps_racing(tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    board = RaceBoard(0.95, record=str(blocked))
    for k, e in enumerate(LEADER):
        board.post("leader", 3, k, sums(e))
    assert post_all(board, "worse", [e * 1.2 for e in LEADER]).stop
    assert "cannot save leader's posts" in caplog.text


@pytest.mark.parametrize("eta", [2, 3])
@pytest.mark.parametrize("n", range(1, 9))
def test_the_bar_is_the_first_rival_behind_which_ashas_percentile_rule_stops(n, eta):
    # Ray's ASHA stops a trial whose reward (-error) is below the rung's nanpercentile at
    # 1 - 1/η of its rivals' rewards. Rival i (1-based) has error i here.
    cutoff = np.nanpercentile([-float(i) for i in range(1, n + 1)], (1 - 1 / eta) * 100)
    # Behind rival r (error above r): stopped for every such error once -r <= cutoff.
    safe = min(r for r in range(1, n + 1) if -r <= cutoff)
    board = RaceBoard(0.95, keep=1 / eta)
    for i in range(1, n + 1):
        for k, e in enumerate(LEADER):
            board.post(f"r{i}", 3, k, sums(e * 1.1**i))
    verdict = post_all(board, "t", [e * 5 for e in LEADER])
    assert verdict.bar_rank == safe and verdict.bar == f"r{safe}" and verdict.n_rivals == n

"""A trial's pooled reports, from fold events as the pool delivers them: out of order,
repeated after a resume, ended early, or failed."""

from __future__ import annotations

import math

import pytest

from eegtune.distributed.fold_reporter import VAL_METRIC
from eegtune.distributed.trial_driver import EpochPooler
from eegtune.metrics import pooled_nrmse


def epoch(fold: int, e: int, rmse: float, n: float = 10.0) -> dict:
    """An epoch event whose error sums give ``rmse`` over ``n`` windows of targets 0..."""
    sums = {"n": n, "sse": rmse**2 * n, "sum_y": n, "sum_y2": 2 * n}  # var(y) = 1
    metrics = {"epoch": e, "fold": fold, "train_loss": 1.0 + e, "inner_val_rmse": rmse,
               "epoch_seconds": 0.5, **{f"inner_val_{k}": v for k, v in sums.items()}}  # fmt: skip
    return {"fold": fold, "epoch_metrics": metrics}


def final(fold: int) -> dict:
    return {"fold": fold, "final": {"oof_nrmse": 0.9, "best_epoch": 0, "resumed_at_epoch": 0}}


def test_an_epoch_is_reported_once_every_fold_has_finished_it():
    pooler = EpochPooler(2)
    pooler.add(epoch(0, 0, 0.5))
    pooler.add(epoch(0, 1, 0.4))  # fold 0 runs ahead: nothing waits for fold 1
    assert pooler.due() == []
    pooler.add(epoch(1, 0, 0.7))
    (first,) = pooler.due()
    assert first["epoch"] == 1  # epochs done, for ASHA's time attribute
    assert first[VAL_METRIC] == pytest.approx(math.sqrt((0.25 + 0.49) / 2))
    assert first["fold_val_rmse"] == [0.5, 0.7] and first["folds_stopped"] == 0
    assert pooler.due() == []  # reported once
    pooler.add(epoch(1, 1, 0.6))
    (second,) = pooler.due()
    assert second["epoch"] == 2 and second["fold_val_rmse"] == [0.4, 0.6]


def test_a_fold_that_stopped_early_counts_with_its_last_epoch():
    pooler = EpochPooler(2)
    for e in range(3):
        pooler.add(epoch(1, e, 0.6 - 0.1 * e))
    pooler.add(epoch(0, 0, 0.5))
    assert len(pooler.due()) == 1
    pooler.add(final(0))  # fold 0 stopped after its first epoch
    reports = pooler.due()
    assert [r["epoch"] for r in reports] == [2, 3]
    assert all(r["folds_stopped"] == 1 and r["fold_val_rmse"][0] == 0.5 for r in reports)
    pooler.add(final(1))
    assert pooler.due() == [] and pooler.finished  # nothing past the last real epoch


def test_epochs_repeated_after_a_resume_replace_the_earlier_ones():
    pooler = EpochPooler(1)
    pooler.add(epoch(0, 0, 0.9))
    pooler.add(epoch(0, 1, 0.8))
    pooler.add(epoch(0, 1, 0.7))  # the fold resumed from a save before epoch 1, ran it again
    pooler.add(final(0))
    assert [r["fold_val_rmse"] for r in pooler.due()] == [[0.9], [0.7]]


def test_the_final_report_pools_the_epochs_the_folds_kept_and_saves_the_oof_scores(tmp_path):
    import json

    import numpy as np
    import pandas as pd

    from eegtune.metrics import nrmse
    from eegtune.training.run_files import OOF, OOF_SCORES, read_oof_scores

    rng = np.random.default_rng(0)
    frames = []
    for k in (0, 1):
        y = rng.normal(size=6)
        frame = pd.DataFrame({"target": y, "prediction": y + rng.normal(size=6), "fold": k})
        (tmp_path / f"fold{k}").mkdir()
        frame.to_parquet(tmp_path / f"fold{k}" / OOF)
        frames.append(frame)
    pooler = EpochPooler(2)
    for e, (a, b) in enumerate([(0.5, 0.9), (0.3, 0.8), (0.4, 0.85)]):
        pooler.add(epoch(0, e, a))
        pooler.add(epoch(1, e, b))
    pooler.add(final(0))
    pooler.add(final(1))
    report = pooler.final_report(str(tmp_path), max_epochs=3)
    kept = [epoch(0, 1, 0.3)["epoch_metrics"], epoch(1, 1, 0.8)["epoch_metrics"]]
    sums = [{k: m[f"inner_val_{k}"] for k in ("n", "sse", "sum_y", "sum_y2")} for m in kept]
    assert report[VAL_METRIC] == pytest.approx(pooled_nrmse(sums))
    assert report["epoch"] == 4 and report["final"] is True
    both = pd.concat(frames)
    assert report["oof_nrmse"] == pytest.approx(nrmse(both["target"], both["prediction"]))
    per_fold = [nrmse(f["target"], f["prediction"]) for f in frames]
    assert report["fold_oof_nrmse"] == pytest.approx(per_fold, rel=1e-12)
    # Scored once, kept beside the predictions; what the results table reads back.
    saved = json.loads((tmp_path / OOF_SCORES).read_text())
    assert saved["oof_nrmse"] == report["oof_nrmse"] and saved["n_rows"] == 12
    saved["oof_nrmse"] = 0.123  # read from the scores file, not recomputed
    (tmp_path / OOF_SCORES).write_text(json.dumps(saved))
    assert read_oof_scores(tmp_path, 2)["oof_nrmse"] == 0.123
    assert read_oof_scores(tmp_path, 3) is None  # a fold count the run did not have
    (tmp_path / "fold0" / OOF).unlink()  # what ASHA leaves: no predictions, no figures
    assert read_oof_scores(tmp_path, 2) is None


def test_a_failed_fold_fails_the_trial_with_its_reason():
    pooler = EpochPooler(2)
    with pytest.raises(RuntimeError, match="fold 1 failed: loss is NaN"):
        pooler.add({"fold": 1, "error": "loss is NaN"})


class _Calls:
    """A dispatcher method called in process (``ray.get`` is the identity here)."""

    def __init__(self, fn):
        self.remote = fn


class FakeDispatcher:
    """Hands out ``batches`` of events one poll at a time; records cancels."""

    def __init__(self, batches: list[list[dict]]) -> None:
        self.batches, self.cancelled, self.submitted = list(batches), [], []
        self.submit = _Calls(lambda trial, configs: self.submitted.append(trial))
        self.cancel = _Calls(lambda trial, forget=False: self.cancelled.append(trial))
        self.events = _Calls(lambda trial, cursor, timeout: (self.batches.pop(0), cursor + 1))


def _raced(monkeypatch, tmp_path, batches, leader=(0.3, 0.3, 0.3)):
    import ray

    from eegtune.distributed.fold_race import FoldRacer, RaceBoard
    from eegtune.distributed.trial_driver import drive_trial

    monkeypatch.setattr(ray, "get", lambda ref: ref)
    board = RaceBoard(confidence=0.5)
    for k, e in enumerate(leader):
        board.post("leader", 1, k, _sums(epoch(k, 0, e)))
    dispatcher, sent = FakeDispatcher(batches), []
    configs = [{"fold": k} for k in range(3)]
    final_report = drive_trial(
        dispatcher, "t", configs, str(tmp_path), 3, sent.append, FoldRacer(board, "t", [1, 2])
    )
    return final_report, sent, dispatcher


def _sums(event: dict) -> dict:
    m = event["epoch_metrics"]
    return {k: m[f"inner_val_{k}"] for k in ("n", "sse", "sum_y", "sum_y2")}


def test_a_trial_that_loses_the_race_cancels_its_folds_and_says_why(monkeypatch, tmp_path):
    import json

    batches = [[epoch(0, 0, 0.9)], [epoch(1, 0, 0.8)], [epoch(2, 0, 0.1)]]
    report, sent, dispatcher = _raced(monkeypatch, tmp_path, batches)
    assert dispatcher.cancelled == ["t"]  # fold 2 never started: no event of it was read
    assert dispatcher.batches == [[epoch(2, 0, 0.1)]]
    assert sent == [report] and report["stopped_by"] == "race" and report["final"] is True
    assert report["epoch"] == 1  # the rung: ASHA files the estimate there
    assert report["fold_epochs"] == 2
    saved = json.loads((tmp_path / "race.json").read_text())
    assert saved["folds"] == [0, 1] and saved["leader"] == "leader" and saved["rung"] == 1
    assert report["stop_reason"] == saved["reason"]
    assert report[VAL_METRIC] == pytest.approx(saved["estimate"])


def test_a_trial_whose_folds_all_ended_is_not_raced(monkeypatch, tmp_path):
    import numpy as np
    import pandas as pd

    from eegtune.training.run_files import OOF

    for k in range(3):
        (tmp_path / f"fold{k}").mkdir()
        y = np.arange(4.0)
        pd.DataFrame({"target": y, "prediction": y + 0.1, "fold": k}).to_parquet(
            tmp_path / f"fold{k}" / OOF
        )
    # Every fold ran one epoch and stopped (patience), all in one batch, as a retried
    # driver replays them: worse than the leader, but the trial is over.
    batches = [[*(epoch(k, 0, 0.9) for k in range(3)), *(final(k) for k in range(3))]]
    report, sent, dispatcher = _raced(monkeypatch, tmp_path, batches)
    assert (
        sent[-1] == report and dispatcher.cancelled == [] and not (tmp_path / "race.json").exists()
    )
    assert "stopped_by" not in report and report["epoch"] == 4 and report["oof_nrmse"] > 0


def test_a_trial_racing_stopped_is_filed_at_ashas_rung():
    """ASHA's cut is the median of the trials at a rung. If the weak trials racing stops
    early were missing there, the cut would rise and ASHA would stop trials it keeps
    without racing (a middling one here)."""
    from types import SimpleNamespace

    from eegtune.distributed.fold_race import Verdict
    from eegtune.distributed.tune import asha_scheduler

    asha = asha_scheduler(max_epochs=10, grace_period=3)
    asha.set_search_properties(VAL_METRIC, "min")
    good, weak, middling = (SimpleNamespace(trial_id=t) for t in ("good", "weak", "middling"))
    for trial in (good, weak, middling):
        asha.on_trial_add(None, trial)
    assert asha.on_trial_result(None, good, {"epoch": 3, VAL_METRIC: 0.6}) == "CONTINUE"
    # The weak trial lost the race on its first two folds at the same rung: its last
    # report reaches ASHA as the result Tune saw and as the trial's end.
    verdict = Verdict("weak", 3, (0, 1), "good", 0.4, 0.01, True, estimate=0.9)
    report = EpochPooler(4).race_report(verdict)
    asha.on_trial_result(None, weak, report)
    asha.on_trial_complete(None, weak, report)
    # Between the two: its 0.7 is no worse than the median of {0.6, 0.9}, 0.75, so it
    # goes on (with the good trial's 0.6 alone at the rung, it would be stopped).
    assert asha.on_trial_result(None, middling, {"epoch": 3, VAL_METRIC: 0.7}) == "CONTINUE"

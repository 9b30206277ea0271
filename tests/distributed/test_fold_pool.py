"""The fold pool's dispatcher on a real local Ray, with workers that train nothing: folds of
several trials share the workers, a worker that dies gets its fold back after Ray restarts
it, a failing fold fails its trial alone, a stopped trial's folds stop, and a retried
trial's driver adopts its running folds instead of starting them again."""

from __future__ import annotations

import os
import time

import pytest

from eegtune.distributed.fold_pool import Dispatcher
from eegtune.distributed.trial_driver import drive_trial

pytestmark = [pytest.mark.ray]


def fake_worker_class():
    """A pool worker that reports ``epochs`` epochs of made-up metrics per fold and acts out
    the fold config's ``behaviour``; defined in a function so Ray ships it by value."""

    class FakeWorker:
        def __init__(self, index, dispatcher, log_dir):
            self.index, self.dispatcher, self.log_dir = index, dispatcher, log_dir

        def run_fold(self, trial, fold, config):
            import ray

            mark = os.path.join(self.log_dir, f"{trial}-{fold}-{time.time_ns()}-{os.getpid()}")
            open(mark, "w").close()  # one file per start of a fold, named by its process
            for e in range(config["epochs"]):
                if config.get("behaviour") == "die" and e == 1:
                    flag = os.path.join(self.log_dir, f"died-{trial}-{fold}")
                    if not os.path.exists(flag):
                        open(flag, "w").close()
                        os._exit(1)  # the worker's process is killed mid-fold, once
                time.sleep(config.get("sleep", 0.0))
                sums = {"inner_val_n": 4.0, "inner_val_sse": 1.0, "inner_val_sum_y": 4.0,
                        "inner_val_sum_y2": 8.0}  # fmt: skip
                metrics = {"epoch": e, "fold": fold, "train_loss": 1.0, "inner_val_rmse": 0.5,
                           "epoch_seconds": 0.01, **sums}  # fmt: skip
                if ray.get(self.dispatcher.epoch.remote(trial, fold, metrics)):
                    return None
            if config.get("behaviour") == "fail":
                raise ValueError("loss is NaN")
            return {"fold": fold, "pid": os.getpid(), "worker": self.index, "best_epoch": 0,
                    "resumed_at_epoch": 0, "oof_nrmse": 1.0}  # fmt: skip

    return FakeWorker


@pytest.fixture(scope="module")
def module_ray():
    """One local Ray for the module: each test gets its own dispatcher and workers."""
    import ray

    from eegtune.distributed.runtime import start_ray

    start_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture
def pool(module_ray, tmp_path):
    """A dispatcher and two restartable fake workers; the folder where they log starts."""
    import ray

    dispatcher = ray.remote(num_cpus=0)(Dispatcher).remote()
    worker = ray.remote(fake_worker_class())
    workers = [
        worker.options(num_cpus=0.5, max_restarts=-1, max_task_retries=0).remote(
            i, dispatcher, str(tmp_path)
        )
        for i in range(2)
    ]
    ray.get(dispatcher.start.remote(workers))
    yield dispatcher, tmp_path
    for actor in [*workers, dispatcher]:
        ray.kill(actor, no_restart=True)


def starts(log_dir, trial: str) -> dict[int, list[int]]:
    """Per fold of ``trial``, the pids of the processes that started it, in order."""
    found: dict[int, list[tuple[int, int]]] = {}
    for name in os.listdir(log_dir):
        parts = name.split("-")
        if parts[0] == trial:
            found.setdefault(int(parts[1]), []).append((int(parts[2]), int(parts[3])))
    return {fold: [pid for _, pid in sorted(runs)] for fold, runs in found.items()}


def drive(dispatcher, trial: str, configs: list[dict]) -> tuple[dict, list[dict]]:
    sent: list[dict] = []
    epochs = max(c["epochs"] for c in configs)
    final = drive_trial(dispatcher, trial, configs, "unused", epochs, sent.append)
    return final, sent


@pytest.fixture
def no_oof(monkeypatch):
    scores = {"oof_nrmse": 1.0, "fold_oof_nrmse": [1.0, 1.0]}
    monkeypatch.setattr("eegtune.training.run_files.write_oof_scores", lambda run, k: scores)


@pytest.mark.timeout(120)
def test_two_trials_share_the_workers_and_each_gets_its_own_epochs(pool, no_oof):
    import threading

    dispatcher, log_dir = pool
    results = {}

    def run(trial):
        configs = [{"fold": k, "epochs": 3, "sleep": 0.05} for k in range(3)]
        results[trial] = drive(dispatcher, trial, configs)

    threads = [threading.Thread(target=run, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=100)
    for trial in ("a", "b"):
        final, sent = results[trial]
        # Three pooled epochs, then the final report; each fold trained once.
        assert [r["epoch"] for r in sent] == [1, 2, 3, 4] and sent[-1] is final
        assert final["final"] is True and final["oof_nrmse"] == 1.0
        assert {fold: len(pids) for fold, pids in starts(log_dir, trial).items()} == {
            0: 1, 1: 1, 2: 1
        }  # fmt: skip
    # Six folds on two workers: both took folds, and of both trials.
    by_worker = {pid for runs in (starts(log_dir, "a"), starts(log_dir, "b"))
                 for pids in runs.values() for pid in pids}  # fmt: skip
    assert len(by_worker) == 2


@pytest.mark.timeout(120)
def test_a_fold_whose_worker_dies_is_resumed_in_the_restarted_worker(pool, no_oof):
    dispatcher, log_dir = pool
    configs = [{"fold": 0, "epochs": 3, "behaviour": "die"}, {"fold": 1, "epochs": 3}]
    final, sent = drive(dispatcher, "t", configs)
    assert final["final"] is True and len(sent) == 4
    runs = starts(log_dir, "t")
    assert len(runs[0]) == 2 and runs[0][0] != runs[0][1]  # started again, in a new process
    assert len(runs[1]) == 1  # the other fold was not touched


@pytest.mark.timeout(120)
def test_a_failing_fold_fails_its_trial_and_no_other(pool, no_oof):
    import ray

    dispatcher, _ = pool
    with pytest.raises(RuntimeError, match=r"fold 1 failed: .*loss is NaN"):
        drive(dispatcher, "bad", [{"fold": 0, "epochs": 2}, {"fold": 1, "epochs": 2,
                                                             "behaviour": "fail"}])  # fmt: skip
    ray.get(dispatcher.cancel.remote("bad", forget=True))
    final, _ = drive(dispatcher, "good", [{"fold": k, "epochs": 2} for k in range(2)])
    assert final["final"] is True


@pytest.mark.timeout(120)
def test_a_stopped_trials_folds_stop_and_its_queued_folds_never_start(pool):
    import ray

    dispatcher, log_dir = pool
    configs = [{"fold": k, "epochs": 50, "sleep": 0.05} for k in range(4)]
    ray.get(dispatcher.submit.remote("s", configs))
    deadline = time.monotonic() + 30
    while len(starts(log_dir, "s")) < 2:  # both workers busy with folds 0 and 1
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ray.get(dispatcher.cancel.remote("s", forget=True))  # what PoolCallback does
    deadline = time.monotonic() + 30
    while ray.get(dispatcher.status.remote())["running"]:
        assert time.monotonic() < deadline, "the running folds did not stop"
        time.sleep(0.05)
    time.sleep(0.3)
    assert sorted(starts(log_dir, "s")) == [0, 1]  # folds 2 and 3 were dropped unstarted
    assert ray.get(dispatcher.status.remote())["pending"] == []


@pytest.mark.timeout(120)
def test_a_retried_trial_adopts_its_running_folds(pool, no_oof):
    import ray

    dispatcher, log_dir = pool
    configs = [{"fold": k, "epochs": 20, "sleep": 0.05} for k in range(2)]
    ray.get(dispatcher.submit.remote("r", configs))  # the first driver, which then dies
    deadline = time.monotonic() + 30
    while len(starts(log_dir, "r")) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    final, sent = drive(dispatcher, "r", configs)  # the retried driver submits again
    assert final["final"] is True
    assert [r["epoch"] for r in sent] == list(range(1, 22))  # replayed from the first epoch
    assert {fold: len(pids) for fold, pids in starts(log_dir, "r").items()} == {0: 1, 1: 1}


@pytest.mark.timeout(120)
def test_a_retried_trial_runs_its_failed_fold_again(pool, no_oof):
    """A retry (Tune's, after the trial failed) must not just replay the old failure."""
    import ray

    dispatcher, log_dir = pool
    configs = [{"fold": 0, "epochs": 2}, {"fold": 1, "epochs": 2, "behaviour": "fail"}]
    with pytest.raises(RuntimeError, match="loss is NaN"):
        drive(dispatcher, "again", configs)
    with pytest.raises(RuntimeError, match="loss is NaN"):
        drive(dispatcher, "again", configs)  # failed again, because it ran again
    # Fold 0's worker may still be starting when fold 1 has failed twice: wait for it.
    deadline = time.monotonic() + 60
    while (status := ray.get(dispatcher.status.remote()))["running"] or status["pending"]:
        assert time.monotonic() < deadline, "fold 0 never finished"
        time.sleep(0.05)
    assert len(starts(log_dir, "again")[1]) == 2 and len(starts(log_dir, "again")[0]) == 1

"""The operator's whole sequence on two Ray nodes, with everything on object storage.

Two ``ray.cluster_utils.Cluster`` nodes on this machine, each with one CPU and one
logical GPU, and a real S3-compatible server on loopback (moto). ``prepare`` writes the
store to ``s3://`` from Ray tasks; ``tune`` trains the folds of a trial on both nodes
with half a GPU each and writes every output to ``s3://``. Then the head's disk is "lost"
(a fresh local cache) and ``tune --resume`` continues the search from the storage URI
alone. ``ensemble`` reads the experiment back from ``s3://`` and writes the ensemble
there.

The GPUs are logical: Ray schedules them as it would real ones, and ``--device auto``
trains on the CPU because torch sees no CUDA device here.
"""

from __future__ import annotations

import json

import pytest

from eegtune import storage
from eegtune.cli import main
from eegtune.data.store import load_manifest

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _tune(bucket: str, address: str, trials: int, *extra: str) -> list[str]:
    return [
        "tune", "--store", f"{bucket}/store", "--challenge", "1", "--space", "softargmax_tcn",
        "--trials", str(trials), "--folds", "2", "--max-epochs", "1", "--scheduler", "fifo",
        "--name", "c1", "--storage-path", f"{bucket}/runs", "--address", address,
        "--gpus-per-fold", "0.5", "--quiet", *extra,
    ]  # fmt: skip


def _complete_trials(bucket: str) -> dict[int, tuple]:
    """Per finished trial: its parameters, when it started and its folder (a rerun from
    scratch draws the same parameters with the same seed, but not at the same time)."""
    import optuna

    from eegtune.distributed.study import TRIAL_ID_ATTR, load_study, pull_journal
    from eegtune.distributed.tune import TuneJob

    job = TuneJob(
        store=f"{bucket}/store",
        challenge=1,
        space="softargmax_tcn",
        n_trials=0,
        n_folds=2,
        name="c1",
        storage_path=f"{bucket}/runs",
    )
    exp = job.experiment()
    pull_journal(exp)
    study = load_study(exp)
    done = optuna.trial.TrialState.COMPLETE
    return {
        t.number: (t.params, t.datetime_start, t.user_attrs[TRIAL_ID_ATTR])
        for t in study.trials
        if t.state == done
    }


@pytest.mark.timeout(600)
def test_prepare_tune_ensemble_resume_on_two_nodes_and_s3(
    synthetic_bids, prepared_store, s3_bucket, tmp_path, monkeypatch, capsys
):
    import ray
    from ray.cluster_utils import Cluster

    from eegtune.ensembles import load_ensemble
    from eegtune.ensembles.remote import fetch_ensemble

    bids, _ = synthetic_bids
    # Started after s3_bucket set the environment, so both nodes' workers inherit it.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "num_gpus": 1, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=1, num_gpus=1)
    try:
        cluster.wait_for_nodes()
        roots = [str(p) for p in sorted(bids.glob("R*_L100_bdf"))]
        prepare = ["prepare", "--out", f"{s3_bucket}/store", "--address", cluster.address]
        assert main([*prepare, *(a for r in roots for a in ("--bids", r)), "--quiet"]) == 0
        ray.shutdown()
        # The same bytes as the store prepared on local disk from the same releases.
        remote = load_manifest(f"{s3_bucket}/store")
        assert sorted((f["path"], f["sha256"]) for f in remote["files"]) == sorted(
            (f["path"], f["sha256"]) for f in load_manifest(prepared_store)["files"]
        )
        assert main(["info", f"{s3_bucket}/store", "--verify"]) == 0

        assert main(_tune(s3_bucket, cluster.address, 1)) == 0
        assert "a pool of 2 fold workers × 0.75 CPU and 0.5 GPU" in capsys.readouterr().out
        first = _complete_trials(s3_bucket)
        assert len(first) == 1

        # The head's disk is gone: a fresh cache, only the URI is left.
        monkeypatch.setenv("EEGTUNE_CACHE", str(tmp_path / "new_head"))
        assert main(_tune(s3_bucket, cluster.address, 2, "--resume")) == 0
        after = _complete_trials(s3_bucket)
        assert len(after) == 2
        assert {n: after[n] for n in first} == first  # the finished trial was kept, not rerun

        experiment = f"{s3_bucket}/runs/c1"
        trial_dirs = {
            f.split("/")[1] for f in storage.list_files(experiment) if f.startswith("folds/")
        }
        assert len(trial_dirs) == 2
        nodes = {n["NodeID"] for n in _alive_nodes(cluster.address)}
        for trial in trial_dirs:
            folds = f"{experiment}/folds/{trial}"
            placed = [
                json.loads(storage.read_text(f"{folds}/fold{k}/placement_0.json")) for k in (0, 1)
            ]
            # 0.75 CPU per pool worker: no node has room for two, so the folds spread.
            assert {p["node_id"] for p in placed} == nodes
            assert all(len(p["gpu_ids"]) == 1 and p["device"] == "cpu" for p in placed)
            assert all(
                storage.exists(f"{folds}/fold{k}/{name}")
                for k in (0, 1)
                for name in ("oof.parquet", "checkpoint.pt")
            )

        ens = f"{s3_bucket}/ensembles/c1"
        assert main(["ensemble", "--experiment", experiment, "--challenge", "1", "--out", ens]) == 0
        assert storage.exists(f"{ens}/ensemble.json")
        import torch

        module = load_ensemble(fetch_ensemble(ens))
        # The same ensemble built from a local copy of the experiment: the S3 path changed
        # no value on the way.
        local_exp = tmp_path / "local_copy" / "c1"
        storage.download_tree(experiment, local_exp)
        local_ens = tmp_path / "local_ens"
        assert main(["ensemble", "--experiment", str(local_exp), "--challenge", "1",
                     "--out", str(local_ens)]) == 0  # fmt: skip
        windows = torch.randn(4, 129, 200, generator=torch.Generator().manual_seed(0)) * 1e-5
        remote_pred = module(windows)
        assert remote_pred.shape == (4, 1) and torch.isfinite(remote_pred).all()
        torch.testing.assert_close(remote_pred, load_ensemble(local_ens)(windows))
    finally:
        ray.shutdown()
        cluster.shutdown()


def _alive_nodes(address: str) -> list[dict]:
    import ray

    ray.init(address=address, log_to_driver=False)
    try:
        return [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()

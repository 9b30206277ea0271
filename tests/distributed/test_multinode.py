"""Two Ray nodes on one machine: the folds of one trial train on both."""

from __future__ import annotations

import json

import pytest

from eegtune.distributed.resources import plan_resources
from eegtune.distributed.train import run_folds
from eegtune.training.config import FoldJob, TrainConfig, make_config

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.mark.timeout(300)
def test_folds_of_one_trial_run_on_both_nodes(prepared_store, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert len(nodes) == 2
        # 0.75 CPU per fold worker: no node has room for two, so the folds must spread.
        plan = plan_resources(ray.cluster_resources()["CPU"], n_folds=2)
        assert plan.cpus_per_worker == 0.75
        job = FoldJob(
            store=str(prepared_store), challenge=1, out_dir=str(tmp_path / "folds"), n_folds=2
        )
        hp = TrainConfig(
            model="softargmax_tcn", model_params={"n_filters": 8, "n_blocks": 2}, max_epochs=1
        )
        config = {k: v for k, v in make_config(job, hp).items() if k != "fold"}
        result = run_folds(config, plan, storage_path=str(tmp_path / "train"), name="multinode")
        assert result.error is None
        placed = [
            json.loads((tmp_path / "folds" / f"fold{k}" / "placement_0.json").read_text())
            for k in (0, 1)
        ]
        assert {p["node_id"] for p in placed} == nodes
        assert all((tmp_path / "folds" / f"fold{k}" / "oof.parquet").exists() for k in (0, 1))
    finally:
        ray.shutdown()
        cluster.shutdown()

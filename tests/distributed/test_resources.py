import pytest

from eegtune.distributed.resources import ResourceError, plan_resources


def test_two_cpus_two_folds_keeps_a_reserve_for_ray_data():
    plan = plan_resources(2, n_folds=2)
    assert plan.data_reserve_cpus == 0.5
    assert plan.cpus_per_worker == 0.75 and plan.cpus_per_trial == 1.5
    assert plan.max_concurrent_trials == 1 and plan.torch_threads == 1


def test_bigger_cluster_runs_several_trials_at_once():
    plan = plan_resources(32, n_folds=5)
    assert plan.data_reserve_cpus == 8 and plan.cpus_per_worker == 1.0
    assert plan.max_concurrent_trials == 4  # 24 usable CPUs / 5 per trial


def test_more_concurrent_folds_than_cpus_minus_reserve_is_refused():
    with pytest.raises(ResourceError, match=r"only 1\.5 of 2 are left after keeping 0\.5"):
        plan_resources(2, n_folds=3, cpus_per_worker=1.0)


def test_a_reserve_that_leaves_nothing_is_refused():
    with pytest.raises(ResourceError, match="leaves nothing"):
        plan_resources(2, n_folds=2, data_reserve_cpus=2)


def test_too_many_concurrent_trials_is_refused():
    with pytest.raises(ResourceError, match="at most 1 fit"):
        plan_resources(4, n_folds=2, cpus_per_worker=1.0, max_concurrent_trials=2)


def test_data_parallel_folds_multiply_workers():
    plan = plan_resources(16, n_folds=2, workers_per_fold=2)
    assert plan.workers_per_trial == 4 and plan.cpus_per_worker == 1.0
    assert plan.max_concurrent_trials == 3


# --- GPUs ------------------------------------------------------------------------------


def test_zero_gpus_leave_the_cpu_plans_as_they_were():
    for args, kwargs in [
        ((2,), {"n_folds": 2}),
        ((32,), {"n_folds": 5}),
        ((16,), {"n_folds": 2, "workers_per_fold": 2}),
        ((8,), {"n_folds": 3, "cpus_per_worker": 0.5, "max_concurrent_trials": 2}),
    ]:
        before = plan_resources(*args, **kwargs)
        assert plan_resources(*args, **kwargs, gpus_per_fold=0.0, total_gpus=0.0) == before
        assert before.gpus_per_fold == before.total_gpus == before.gpus_per_worker == 0
        assert "GPU" not in before.describe()
        # GPUs on the cluster that no fold asks for change neither the layout nor the cap.
        idle = plan_resources(*args, **kwargs, total_gpus=4)
        assert idle.to_dict() == {**before.to_dict(), "total_gpus": 4.0}
        assert "GPU" not in idle.describe()


def test_a_quarter_gpu_per_fold_packs_four_folds_on_one_gpu():
    plan = plan_resources(8, n_folds=4, gpus_per_fold=0.25, total_gpus=1)
    assert plan.gpus_per_worker == 0.25 and plan.max_concurrent_trials == 1
    # 12 usable CPUs hold three 4-fold trials; two GPUs hold two of them.
    plan = plan_resources(16, n_folds=4, gpus_per_fold=0.25, total_gpus=2)
    assert plan_resources(16, n_folds=4).max_concurrent_trials == 3
    assert plan.max_concurrent_trials == 2


def test_gpus_cap_concurrent_trials_below_what_the_cpus_allow():
    assert plan_resources(32, n_folds=5).max_concurrent_trials == 4
    plan = plan_resources(32, n_folds=5, gpus_per_fold=1, total_gpus=5)
    assert plan.max_concurrent_trials == 1 and plan.gpus_per_worker == 1.0
    # And the CPUs still cap a GPU-rich cluster.
    assert plan_resources(8, n_folds=2, gpus_per_fold=1, total_gpus=8).max_concurrent_trials == 3


def test_concurrent_trials_beyond_the_gpus_are_refused():
    with pytest.raises(ResourceError, match="at most 1 fit"):
        plan_resources(32, n_folds=5, gpus_per_fold=1, total_gpus=5, max_concurrent_trials=2)


def test_a_gpu_bound_refusal_of_concurrent_trials_names_the_gpus():
    with pytest.raises(ResourceError, match="GPU"):
        plan_resources(32, n_folds=5, gpus_per_fold=1, total_gpus=5, max_concurrent_trials=2)


def test_a_trial_needing_more_gpus_than_the_cluster_has_is_refused():
    with pytest.raises(ResourceError, match=r"5 folds × 1 GPU = 5 GPUs, but the cluster has 4"):
        plan_resources(16, n_folds=5, gpus_per_fold=1, total_gpus=4)
    with pytest.raises(ResourceError, match=r"2 folds × 0\.5 GPU = 1 GPUs, but the cluster has 0"):
        plan_resources(4, n_folds=2, gpus_per_fold=0.5)
    with pytest.raises(ResourceError, match=">= 0"):
        plan_resources(4, n_folds=2, gpus_per_fold=-1, total_gpus=1)


def test_data_parallel_folds_split_their_gpu_share():
    plan = plan_resources(16, n_folds=2, workers_per_fold=2, gpus_per_fold=0.5, total_gpus=1)
    assert plan.gpus_per_worker == 0.25 and plan.max_concurrent_trials == 1
    # Whole GPUs per worker are placeable too.
    plan = plan_resources(16, n_folds=2, workers_per_fold=2, gpus_per_fold=4, total_gpus=8)
    assert plan.gpus_per_worker == 2.0


def test_more_than_one_gpu_per_worker_must_be_whole():
    with pytest.raises(ResourceError, match=r"3 GPU per fold over 2 worker\(s\) is 1\.5 GPU"):
        plan_resources(16, n_folds=2, workers_per_fold=2, gpus_per_fold=3, total_gpus=8)


def test_describe_names_the_gpus():
    plan = plan_resources(16, n_folds=4, gpus_per_fold=0.25, total_gpus=2)
    text = plan.describe()
    assert "4 × 0.25 = 1 of 2 GPU(s) per trial" in text
    assert "up to 2 trial(s) at once" in text
    assert plan.to_dict()["gpus_per_fold"] == 0.25 and plan.to_dict()["total_gpus"] == 2.0

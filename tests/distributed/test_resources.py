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

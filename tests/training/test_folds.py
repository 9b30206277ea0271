import json

import numpy as np
import pandas as pd
import pytest

from eegtune.training.folds import (
    Fold,
    audit_folds,
    inner_split,
    kfold_subjects,
    make_folds,
    read_split,
    release_folds,
    saved_folds,
    split_record,
    store_subjects,
)


def subjects(n=40, releases=("R1", "R2", "R3"), seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "subject": [f"S{i:03d}" for i in range(n)],
            "release": [releases[i % len(releases)] for i in range(n)],
            "n_windows": rng.integers(20, 80, n),
            "target": rng.normal(1.5, 0.3, n),
        }
    )


def test_kfold_holds_out_every_subject_exactly_once_and_never_trains_on_it():
    table = subjects()
    folds = kfold_subjects(table, 5, seed=0)
    assert audit_folds(folds, table["subject"].tolist()) == []
    held = [s for f in folds for s in f.test]
    assert sorted(held) == sorted(table["subject"])
    assert all(len(f.test) == 8 for f in folds)


def test_kfold_is_stratified_by_target():
    table = subjects(n=100)
    folds = kfold_subjects(table, 5, seed=1)
    by = table.set_index("subject")["target"]
    means = [by.loc[list(f.test)].mean() for f in folds]
    # Dealing sorted subjects keeps every fold's mean close to the overall mean; a random
    # split of 20 subjects would scatter by about 0.3 / sqrt(20) ~ 0.07.
    assert np.ptp(means) < 0.03


def test_seed_drives_the_split():
    table = subjects()
    a = kfold_subjects(table, 5, seed=0)
    b = kfold_subjects(table, 5, seed=0)
    c = kfold_subjects(table, 5, seed=1)
    assert a == b and a != c


def test_leave_one_release_out():
    table = subjects()
    folds = release_folds(table)
    assert [f.name for f in folds] == ["without R1", "without R2", "without R3"]
    rel = table.set_index("subject")["release"]
    for f in folds:
        assert rel.loc[list(f.test)].nunique() == 1
        assert set(rel.loc[list(f.train)]) == {"R1", "R2", "R3"} - set(rel.loc[list(f.test)])
    with pytest.raises(ValueError, match="at least 2 releases"):
        release_folds(table.assign(release="R1"))


def test_audit_catches_each_kind_of_leak():
    everyone = ["a", "b", "c", "d"]
    overlap = [Fold(0, ("a", "b", "c"), ("c", "d")), Fold(1, ("c", "d"), ("a", "b"))]
    assert any("both train and test" in p for p in audit_folds(overlap, everyone))
    twice = [Fold(0, ("c", "d"), ("a", "b")), Fold(1, ("a", "d"), ("b", "c"))]
    assert any("held out by both" in p for p in audit_folds(twice, everyone))
    assert any("never held out" in p for p in audit_folds(twice, everyone))


def test_inner_split_comes_from_training_subjects_only():
    fold = kfold_subjects(subjects(), 5, seed=0)[2]
    fit, inner = inner_split(fold.train, 0.2, seed=0, fold=2)
    assert set(fit) | set(inner) == set(fold.train)
    assert not set(fit) & set(inner) and not set(inner) & set(fold.test)
    assert len(inner) == round(0.2 * len(fold.train))
    assert inner_split(fold.train, 0.2, seed=0, fold=2) == (fit, inner)


def test_too_few_subjects_is_a_clear_error():
    with pytest.raises(ValueError, match="5 folds need at least 5 subjects"):
        make_folds(subjects(n=3), "kfold", 5, 0)


def test_store_subjects_reads_the_prepared_store(prepared_store, synthetic_bids):
    _, oracle = synthetic_bids
    table = store_subjects(prepared_store, 1)
    assert len(table) == 6 and table["n_windows"].sum() == oracle["challenge1"]["n_trials"]
    assert set(table["release"]) == {"R1", "R2"}


def test_a_saved_split_reads_back_as_the_same_folds_and_its_hash_tracks_the_assignment(tmp_path):
    folds = kfold_subjects(subjects(), 5, seed=0)
    record = split_record(folds, "kfold", 5, 0)
    path = tmp_path / "folds.json"
    path.write_text(json.dumps(record))
    assert saved_folds(str(path), "kfold", 5, 0) == folds
    # One subject moved to another fold: another hash, which a resume refuses.
    moved = [Fold(f.index, f.train, f.test, f.name) for f in folds]
    moved[0] = Fold(0, folds[0].train + folds[1].test[:1], folds[0].test, folds[0].name)
    assert split_record(moved, "kfold", 5, 0)["hash"] != record["hash"]
    assert (
        split_record(kfold_subjects(subjects(), 5, seed=1), "kfold", 5, 1)["hash"]
        != (record["hash"])
    )
    # A job that asks for another split than the file holds is refused, naming both.
    with pytest.raises(ValueError, match=r"'seed': 0.*'seed': 3"):
        saved_folds(str(path), "kfold", 5, 3)
    read_split.cache_clear()

"""Where the folds are drawn: subject-grouped cross-validation and its audit.

Folds are always sets of *subjects*; a subject's windows travel together. Two kinds:

- ``kfold``: K folds stratified by the subjects' mean target (subjects sorted by it,
  then dealt into folds in seeded random order within each run of K), so every fold
  spans the target range;
- ``release``: leave-one-release-out, the closest stand-in for the hidden R12 test.

Inside a fold, early stopping needs its own validation subjects, carved from the fold's
*training* subjects (:func:`inner_split`); the held-out subjects are touched only to
write out-of-fold predictions.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from eegtune.data.store import store_files
from eegtune.errors import ConfigError


@dataclass(frozen=True)
class Fold:
    index: int
    train: tuple[str, ...]
    test: tuple[str, ...]
    name: str = ""


def store_subjects(store: str | Path, challenge: int) -> pd.DataFrame:
    """One row per subject: release, window count and mean target (reads two columns)."""
    files = store_files(store, challenge)
    parts = [pq.read_table(f, columns=["subject", "release", "target"]).to_pandas() for f in files]
    table = pd.concat(parts, ignore_index=True)
    return (
        table.groupby("subject", sort=True)
        .agg(release=("release", "first"), n_windows=("target", "size"), target=("target", "mean"))
        .reset_index()
    )


def kfold_subjects(subjects: pd.DataFrame, n_folds: int, seed: int) -> list[Fold]:
    if len(subjects) < n_folds:
        raise ConfigError(
            f"{n_folds} folds need at least {n_folds} subjects, found {len(subjects)}"
        )
    rng = np.random.default_rng([seed, 1])
    ordered = subjects.sort_values(["target", "subject"], kind="mergesort")["subject"].to_numpy()
    fold_of = np.empty(len(ordered), dtype=int)
    for start in range(0, len(ordered), n_folds):
        chunk = slice(start, min(start + n_folds, len(ordered)))
        size = chunk.stop - chunk.start
        fold_of[chunk] = rng.permutation(n_folds)[:size]
    folds = []
    for k in range(n_folds):
        test = tuple(sorted(ordered[fold_of == k]))
        train = tuple(sorted(ordered[fold_of != k]))
        folds.append(Fold(k, train, test, name=f"fold{k}"))
    return folds


def release_folds(subjects: pd.DataFrame) -> list[Fold]:
    releases = sorted(subjects["release"].unique())
    if len(releases) < 2:
        raise ConfigError(f"leave-one-release-out needs at least 2 releases, found {releases}")
    folds = []
    for k, release in enumerate(releases):
        held = subjects["release"] == release
        folds.append(
            Fold(
                k,
                tuple(sorted(subjects.loc[~held, "subject"])),
                tuple(sorted(subjects.loc[held, "subject"])),
                name=f"without {release}",
            )
        )
    return folds


def make_folds(subjects: pd.DataFrame, split: str, n_folds: int, seed: int) -> list[Fold]:
    if split == "kfold":
        return kfold_subjects(subjects, n_folds, seed)
    if split == "release":
        return release_folds(subjects)
    raise ConfigError(f"unknown split {split!r}; use 'kfold' or 'release'")


def inner_split(
    train: tuple[str, ...], fraction: float, seed: int, fold: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(fit subjects, inner-validation subjects), both drawn from the fold's training side."""
    if len(train) < 2:
        raise ConfigError("a fold needs at least 2 training subjects to carve a validation set")
    rng = np.random.default_rng([seed, 2, fold])
    order = rng.permutation(sorted(train))
    # Two validation subjects where there are enough, so its targets are not all one value.
    n_val = min(max(2 if len(order) >= 4 else 1, round(fraction * len(order))), len(order) - 1)
    return tuple(sorted(order[n_val:])), tuple(sorted(order[:n_val]))


def audit_folds(folds: list[Fold], all_subjects: list[str], exhaustive: bool = True) -> list[str]:
    """Every way a split could leak, as readable problems (empty when clean)."""
    problems = []
    seen: dict[str, int] = {}
    for fold in folds:
        overlap = set(fold.train) & set(fold.test)
        if overlap:
            problems.append(
                f"{fold.name}: {len(overlap)} subject(s) in both train and test, "
                f"e.g. {sorted(overlap)[0]}"
            )
        for s in fold.test:
            if s in seen:
                problems.append(
                    f"subject {s} is held out by both fold {seen[s]} and fold {fold.index}"
                )
            seen[s] = fold.index
    if exhaustive:
        missing = sorted(set(all_subjects) - set(seen))
        if missing:
            problems.append(f"{len(missing)} subject(s) are never held out, e.g. {missing[0]}")
    return problems


# --- The split an experiment fixes once -------------------------------------------------

SPLIT_FILE = "folds.json"


def split_record(folds: list[Fold], split: str, n_folds: int, seed: int) -> dict:
    """The folds as JSON, with a hash of their assignment that a resume compares."""
    assignment = [{"index": f.index, "name": f.name, "train": list(f.train),
                   "test": list(f.test)} for f in folds]  # fmt: skip
    digest = hashlib.sha256(json.dumps(assignment, sort_keys=True).encode()).hexdigest()[:16]
    return {"split": split, "n_folds": n_folds, "seed": seed, "hash": digest, "folds": assignment}


@functools.lru_cache(maxsize=8)
def read_split(location: str) -> dict:
    """A saved split, read once per process (the file never changes within an experiment)."""
    from eegtune import storage

    return json.loads(storage.read_text(location))


def saved_folds(location: str, split: str, n_folds: int, seed: int) -> list[Fold]:
    record = read_split(location)
    wanted = {"split": split, "n_folds": n_folds, "seed": seed}
    if any(record.get(k) != v for k, v in wanted.items()):
        saved = {k: record.get(k) for k in wanted}
        raise ConfigError(f"{location} holds the split {saved}, not {wanted}")
    return [Fold(f["index"], tuple(f["train"]), tuple(f["test"]), f["name"])
            for f in record["folds"]]  # fmt: skip

"""Multi-seed finalists: the top trials retrained with new seeds, on the same folds.

A retrained trial changes only its initialisation and data order (the split keeps its
experiment's seed through ``split_seed``, or its OOF rows would stop lining up), and runs
on Ray with the fold-parallel trainer ``eegtune tune`` uses. Each (trial, seed) lands in
``EXPERIMENT/finalists/<trial id>_seed<S>/``; a rerun skips the ones already finished and
resumes the others from their checkpoints.

A finalist and its retrainings become one more candidate, a **seed bag** (``seed_bags``):
the mean of every seed's fold models. Averaging seeds removes noise that a choice among
seeds would have to be lucky with. Measured nested on three synthetic data sets (12
trials, top 5 with 3 new seeds each; BENCHMARKS.md), bags shipped +2.45% to +3.30% over
the best single trial, and offering each seed's run as its own candidate instead measured
lower in 4 of 5 comparisons.

The spread of a trial's OOF NRMSE across seeds is the noise floor of any comparison
between trials: an ensemble's gain smaller than it is not evidence of anything.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from eegtune import storage
from eegtune.distributed.experiment import Experiment
from eegtune.ensembles.candidates import Candidate
from eegtune.ensembles.errors import EnsembleError
from eegtune.metrics import nrmse
from eegtune.training.run_files import (
    CHECKPOINT,
    CONFIG,
    OOF,
    fold_dir,
    member_file,
    read_oof_scores,
)

logger = logging.getLogger(__name__)


def finalist_seeds(exp: Experiment, n_seeds: int) -> list[int]:
    """The new seeds: the experiment's seed + 1 … + N (fixed, so reruns find their runs)."""
    return [exp.seed + s for s in range(1, n_seeds + 1)]


def finalist_run_dir(exp: Experiment, trial: Candidate, seed: int) -> Path:
    """Where ``trial`` retrained with ``seed`` lives: ``finalists/<trial id>_seed<S>``."""
    return exp.finalist_dir(f"{trial.trial_dir.name}_seed{seed}")


def retrain_config(saved: dict, seed: int, exp: Experiment, out_dir: str):
    """A trial's saved config with a new training seed, on its experiment's saved folds:
    the typed (FoldJob, TrainConfig) pair, refused if the saved config holds settings this
    eegtune does not know."""
    from eegtune.training.config import parse_config

    job, hp = parse_config(
        {
            # A config saved before this setting existed trained with decay on every
            # parameter.
            "decay_norms_and_biases": True,
            **saved,
            "seed": seed,
            "split_seed": exp.seed,
            "out_dir": out_dir,
            "device": "auto",  # the GPU Ray assigns, if the plan asked for one
        }
    )
    # The experiment's own split file, where it has one: the folds its trials had, even
    # if this eegtune would draw them differently.
    if storage.exists(exp.split_uri):
        job = dataclasses.replace(job, split_file=exp.split_uri)
    return job, hp


def retrain_with_seeds(
    experiments: dict[str, Experiment],
    finalists: list[Candidate],
    n_seeds: int,
    log: Callable[[str], None] | None = None,
) -> list[Candidate]:
    """Train each finalist again with ``n_seeds`` new seeds on the running Ray cluster;
    return the new (trial, seed) candidates."""
    log = log or logger.info
    import ray

    from eegtune.distributed.memory_plan import cluster_memory, plan_data
    from eegtune.distributed.resources import plan_resources
    from eegtune.distributed.shared_windows import share_windows
    from eegtune.distributed.train import run_folds
    from eegtune.training.data_modes import store_size

    if n_seeds < 1:
        return []
    exp0 = experiments[finalists[0].experiment]
    # The experiment's GPU share per fold, where the cluster still has the GPUs for it.
    cluster = ray.cluster_resources()
    gpus = float(exp0.settings.get("plan", {}).get("gpus_per_fold", 0.0))
    gpus = gpus if cluster.get("GPU", 0) >= exp0.n_folds * gpus else 0.0
    plan = plan_resources(
        cluster.get("CPU", 0), exp0.n_folds, gpus_per_fold=gpus, total_gpus=cluster.get("GPU", 0)
    )
    mode = str(exp0.settings.get("data_mode", "auto"))
    data, plan = plan_data(mode, store_size(exp0.store, exp0.challenge), cluster_memory(), plan)
    log(f"finalists: {len(finalists)} trial(s) × {n_seeds} new seed(s); {plan.describe()}")
    windows = None
    out = []
    todo = [(c, s) for c in finalists for s in finalist_seeds(experiments[c.experiment], n_seeds)]
    for i, (cand, seed) in enumerate(todo, start=1):
        exp = experiments[cand.experiment]
        run_dir = finalist_run_dir(exp, cand, seed)
        # Fold workers on other nodes write to the experiment's URI; the mirror follows.
        out_dir = exp.finalist_uri(run_dir.name)
        label = f"{cand.experiment}/trial {cand.trial} seed {seed}"
        if not _finished(run_dir, exp.n_folds):
            config_file = cand.trial_dir / CONFIG
            if not config_file.exists():
                raise EnsembleError(f"{cand.label}: cannot retrain, no {config_file}")
            saved = json.loads(config_file.read_text())
            fold_job, hp = retrain_config(saved, seed, exp, out_dir)
            log(f"[{i}/{len(todo)}] training {label}")
            if data.mode == "memory" and windows is None:
                windows = share_windows(exp.store, exp.challenge, progress=False)
            run_folds(
                fold_job,
                hp,
                plan,
                storage_path=exp.finalist_uri("train"),
                name=run_dir.name,
                windows=windows,
                data_mode=data.mode,
                worker_heap=data.worker_heap,
            )
            if exp.source:
                storage.download_tree(out_dir, run_dir, keep=member_file)
            if not _finished(run_dir, exp.n_folds):
                raise EnsembleError(f"{label}: training ended without every fold's outputs")
        else:
            log(f"[{i}/{len(todo)}] {label}: already trained")
        out.append(finalist_candidate(cand, seed, run_dir))
    return out


def _finished(run_dir: Path, n_folds: int) -> bool:
    return all(
        (Path(fold_dir(run_dir, k)) / name).exists()
        for k in range(n_folds)
        for name in (OOF, CHECKPOINT)
    )


def finalist_candidate(original: Candidate, seed: int, run_dir: Path) -> Candidate:
    """A trained finalist as a single-seed run of ``original``, scored from its OOF files."""
    scores = read_oof_scores(run_dir, original.n_folds)
    if scores is None:
        raise EnsembleError(f"{run_dir}: the retrained folds left no out-of-fold predictions")
    return dataclasses.replace(
        original, seed=seed, trial_dir=run_dir, oof_nrmse=float(scores["oof_nrmse"])
    )


def seed_bags(finalists: list[Candidate], retrained: list[Candidate]) -> list[Candidate]:
    """One seed bag per finalist: its own run first, then its retrainings, scored by the
    pooled OOF NRMSE of their averaged predictions."""
    bags = []
    for original in finalists:
        same = (original.experiment, original.trial)
        runs = (original, *(r for r in retrained if (r.experiment, r.trial) == same))
        if len(runs) < 2:
            continue
        bag = dataclasses.replace(original, parts=runs)
        frame = bag.oof()
        y, pred = (frame[k].to_numpy(np.float64) for k in ("target", "prediction"))
        bags.append(dataclasses.replace(bag, oof_nrmse=nrmse(y, pred)))
    return bags


def seed_spread(candidates: list[Candidate]) -> dict[str, dict]:
    """Per seed bag: its seeds' OOF NRMSE and their std (ddof=1)."""
    return {
        f"{bag.experiment}/trial {bag.trial}": {
            "seeds": [run.seed for run in bag.parts],
            "oof_nrmse": [run.oof_nrmse for run in bag.parts],
            "std": float(np.std([run.oof_nrmse for run in bag.parts], ddof=1)),
            "bag_oof_nrmse": bag.oof_nrmse,
        }
        for bag in candidates
        if bag.parts
    }

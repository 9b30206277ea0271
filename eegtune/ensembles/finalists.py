"""Multi-seed finalists: the top trials retrained with new seeds, on the same folds.

A retrained trial changes only its initialisation and data order (the split keeps its
experiment's seed through ``split_seed``, or its OOF rows would stop lining up), and runs
on Ray with the fold-parallel trainer ``eegtune tune`` uses. Each (trial, seed) lands in
``EXPERIMENT/finalists/<trial id>_seed<S>/`` and becomes one more candidate; a rerun
skips the ones already finished and resumes the others from their checkpoints.

The spread of a trial's OOF NRMSE across seeds is the noise floor of any comparison
between trials: an ensemble's gain smaller than it is not evidence of anything.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from eegtune import storage
from eegtune.ensembles.candidates import Candidate, Experiment, experiment_job
from eegtune.ensembles.errors import EnsembleError
from eegtune.ensembles.remote import run_files
from eegtune.metrics import nrmse
from eegtune.training.train_func import CHECKPOINT, OOF

FINALISTS = "finalists"


def finalist_seeds(exp: Experiment, n_seeds: int) -> list[int]:
    """The new seeds: the experiment's seed + 1 … + N (fixed, so reruns find their runs)."""
    return [exp.seed + s for s in range(1, n_seeds + 1)]


def retrain_config(saved: dict, seed: int, split_seed: int, out_dir: str) -> dict:
    """A trial's saved config with a new training seed, on its experiment's folds."""
    return {
        # A config saved before this setting existed trained with decay on every parameter.
        "decay_norms_and_biases": True,
        **saved,
        "seed": seed,
        "split_seed": split_seed,
        "out_dir": out_dir,
        "device": "auto",  # the GPU Ray assigns, if the plan asked for one
    }


def retrain_with_seeds(
    experiments: dict[str, Experiment],
    finalists: list[Candidate],
    n_seeds: int,
    log: Callable[[str], None] = print,
) -> list[Candidate]:
    """Train each finalist again with ``n_seeds`` new seeds on the running Ray cluster;
    return the new (trial, seed) candidates."""
    import ray

    from eegtune.distributed.resources import plan_resources
    from eegtune.distributed.shared_windows import share_windows
    from eegtune.distributed.train import run_folds
    from eegtune.distributed.tune import plan_experiment_data

    if n_seeds < 1:
        return []
    exp0 = experiments[finalists[0].experiment]
    job = experiment_job(exp0)
    # The experiment's GPU share per fold, where the cluster still has the GPUs for it.
    cluster = ray.cluster_resources()
    gpus = float(exp0.settings.get("plan", {}).get("gpus_per_fold", 0.0))
    gpus = gpus if cluster.get("GPU", 0) >= exp0.n_folds * gpus else 0.0
    plan = plan_resources(
        cluster.get("CPU", 0), exp0.n_folds, gpus_per_fold=gpus, total_gpus=cluster.get("GPU", 0)
    )
    data, plan = plan_experiment_data(job, plan)
    log(f"finalists: {len(finalists)} trial(s) × {n_seeds} new seed(s); {plan.describe()}")
    windows = None
    out = []
    todo = [(c, s) for c in finalists for s in finalist_seeds(experiments[c.experiment], n_seeds)]
    for i, (cand, seed) in enumerate(todo, start=1):
        exp = experiments[cand.experiment]
        run_dir = exp.path / FINALISTS / f"{cand.trial_dir.name}_seed{seed}"
        # Fold workers on other nodes write to the experiment's URI; the mirror follows.
        out_dir = storage.join(exp.source, FINALISTS, run_dir.name) if exp.source else str(run_dir)
        label = f"{cand.experiment}/trial {cand.trial} seed {seed}"
        if not _finished(run_dir, exp.n_folds):
            config_file = cand.trial_dir / "config.json"
            if not config_file.exists():
                raise EnsembleError(f"{cand.label}: cannot retrain, no {config_file}")
            config = retrain_config(json.loads(config_file.read_text()), seed, exp.seed, out_dir)
            log(f"[{i}/{len(todo)}] training {label}")
            if data.mode == "memory" and windows is None:
                windows = share_windows(job.store, job.challenge, progress=False)
            run_folds(
                config,
                plan,
                storage_path=storage.join(exp.source or exp.path, FINALISTS, "train"),
                name=run_dir.name,
                windows=windows,
                data_mode=data.mode,
                worker_heap=data.worker_heap,
            )
            if exp.source:
                storage.download_tree(out_dir, run_dir, keep=run_files)
            if not _finished(run_dir, exp.n_folds):
                raise EnsembleError(f"{label}: training ended without every fold's outputs")
        else:
            log(f"[{i}/{len(todo)}] {label}: already trained")
        out.append(_as_candidate(cand, seed, run_dir))
    return out


def _finished(run_dir: Path, n_folds: int) -> bool:
    return all(
        (run_dir / f"fold{k}" / name).exists() for k in range(n_folds) for name in (OOF, CHECKPOINT)
    )


def _as_candidate(original: Candidate, seed: int, run_dir: Path) -> Candidate:
    cand = dataclasses.replace(original, seed=seed, trial_dir=run_dir, oof_nrmse=float("nan"))
    oof = cand.oof()
    return dataclasses.replace(cand, oof_nrmse=nrmse(oof["target"], oof["prediction"]))


def seed_spread(candidates: list[Candidate]) -> dict[str, dict]:
    """Per trial with more than one seed: its seeds' OOF NRMSE and their std (ddof=1)."""
    by_trial: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_trial.setdefault(f"{c.experiment}/trial {c.trial}", []).append(c)
    return {
        trial: {
            "seeds": [c.seed for c in group],
            "oof_nrmse": [c.oof_nrmse for c in group],
            "std": float(np.std([c.oof_nrmse for c in group], ddof=1)),
        }
        for trial, group in by_trial.items()
        if len(group) > 1
    }

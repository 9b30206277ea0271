"""CPU inference of a many-member ensemble through `eegtune score`'s subprocess path.

Builds a Challenge 1 ensemble of ``--members`` members × ``--folds`` fold models
(``softargmax_tcn`` at its default size; random weights cost what trained ones do),
exports the zip, and predicts ``--windows`` windows, written as one file per 1,000
windows like recordings, in the scorer's fresh isolated process. Side by side in the same
run, the baseline: a one-member, one-fold zip on the same windows. Printed: the zip's
size, windows/s, the share of the process's time inside the models, and the ratio of the
ensemble's time to (fold models × the single model's time), i.e. what the ensemble
wrapper costs beyond its models (1.0 = nothing).

Goal (issue 10): a 15-member ensemble over 15,000 windows in at most 2 minutes on 2 cores.

    .venv/bin/python benchmarks/submission_inference.py --members 15 --folds 5 --windows 15000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from eegtune.ensembles.predictor import write_ensemble
from eegtune.ensembles.scoring import FAST_BATCH, run_submission, unpack_submission
from eegtune.ensembles.submission import export_submission
from eegtune.models import create_model


def _ensemble(work: Path, name: str, members: int, folds: int, model: str, challenge=1) -> Path:
    files = []
    for m in range(members):
        fold_files = []
        for k in range(folds):
            torch.manual_seed(m * 100 + k)
            net = create_model(model)
            path = work / f"{name}_m{m}_f{k}.pt"
            torch.save({"state_dict": net.state_dict(), "model_config": net.get_config()}, path)
            fold_files.append(path)
        files.append(fold_files)
    desc = {
        "challenge": challenge,
        "members": [{"label": f"member {m}", "weight": 1.0 / members} for m in range(members)],
        "alpha": 1.0,
        "centre": 1.5,
    }
    write_ensemble(work / name, desc, files)
    return work / name


def _run(work: Path, zip_path: Path, files: list[Path], batch: int) -> tuple[float, dict]:
    unpacked = work / f"{zip_path.stem}_unpacked"
    unpacked.mkdir()
    unpack_submission(zip_path, unpacked)
    t0 = time.perf_counter()
    timing = run_submission(unpacked, 1, files, work / f"{zip_path.stem}.npy", batch)
    return time.perf_counter() - t0, timing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=15)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--windows", type=int, default=15_000)
    ap.add_argument("--model", default="softargmax_tcn")
    ap.add_argument("--batch-size", type=int, default=FAST_BATCH, help="1 is the scorer's")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="eegtune_inference_"))
    rng = np.random.default_rng(0)
    files = []
    for start in range(0, args.windows, 1000):
        n = min(1000, args.windows - start)
        path = work / f"rec{start:06d}.npy"
        np.save(path, (rng.standard_normal((n, 129, 200)) * 10).astype(np.float32))
        files.append(path)
    big = _ensemble(work, "big", args.members, args.folds, args.model)
    one = _ensemble(work, "one", 1, 1, args.model)
    mean_c2 = _ensemble(work, "mean_c2", 0, 0, args.model, challenge=2)  # unused slot
    big_zip = export_submission(big, mean_c2, work / "big.zip")
    one_zip = export_submission(one, mean_c2, work / "one.zip")

    t_one, timing_one = _run(work, one_zip.path, files, args.batch_size)
    t_big, timing_big = _run(work, big_zip.path, files, args.batch_size)
    n_models = args.members * args.folds
    print(
        f"{args.windows} windows, batch {args.batch_size}, {args.members} members × "
        f"{args.folds} folds of {args.model} = {n_models} fold models"
    )
    print(f"zip size: {big_zip.size_bytes / 2**20:.1f} MiB ({one_zip.size_bytes / 2**20:.2f} MiB "
          f"for one model)")  # fmt: skip
    for label, wall, timing in (("1 model", t_one, timing_one), ("ensemble", t_big, timing_big)):
        share = timing["model_seconds"] / timing["total_seconds"]
        print(
            f"{label:<9} {wall:7.1f} s wall (subprocess included), "
            f"{args.windows / wall:8.1f} windows/s, {share:.0%} of the process inside the models"
        )
    ratio = timing_big["model_seconds"] / (n_models * timing_one["model_seconds"])
    print(f"ensemble model time / ({n_models} × one model's): {ratio:.2f}")
    projected = t_big * 15_000 / args.windows
    goal = "met" if projected <= 120 else "missed"
    how = "measured" if args.windows == 15_000 else "projected from this run's rate"
    print(f"goal <= 120 s for 15,000 windows: {goal} ({projected:.0f} s, {how})")


if __name__ == "__main__":
    main()

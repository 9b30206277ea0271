"""CPU inference of a many-member ensemble through `eegtune score`'s subprocess path.

Builds a Challenge 1 ensemble of ``--members`` members × ``--folds`` fold models
(``softargmax_tcn`` at its default size; random weights cost what trained ones do),
exports the zip, and predicts ``--windows`` windows, written as one file per 1,000
windows like recordings, in the scorer's fresh isolated process. Side by side in the same
run, the baseline: a one-member, one-fold zip on the same windows. Each zip runs twice:
as exported (``fast``: batches of at most ``FAST_SMALL_BATCHES`` windows take the
ensemble's fast route) and with that route switched off in its ``submission.py``
(``plain``: every fold model called one by one, as before the route existed). Printed:
the zip's size, windows/s, the share of the process's time inside the models, the ratio
of the ensemble's time to (fold models × the single model's time), i.e. what the ensemble
wrapper costs beyond its models (1.0 = nothing), plain ÷ fast, and the largest gap
between the two routes' predictions.

``--distinct-configs`` gives member m ``n_filters = 20 + 2m`` (its folds share it), as
trials of a search differ, so no two members' fold models can be stacked together.
``--threads N`` sets ``OMP_NUM_THREADS`` for the scorer's processes (default: torch's own,
one per core); on a shared machine, 2 threads' spin-waits can make runs many times slower.

Goal (issue 10): a 15-member ensemble over 15,000 windows in at most 2 minutes on 2 cores.

    .venv/bin/python benchmarks/submission_inference.py --members 15 --folds 5 --windows 15000
    .venv/bin/python benchmarks/submission_inference.py --members 15 --folds 1 --windows 300 \
        --batch-size 1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from eegtune.ensembles.predictor import write_ensemble
from eegtune.ensembles.scoring import FAST_BATCH, run_submission, unpack_submission
from eegtune.ensembles.submission import export_submission
from eegtune.models import create_model

# The line of the zip's submission.py that the plain route rewrites to 0.
FAST_LINE = "FAST_SMALL_BATCHES = SMALL_BATCH\n"


def _ensemble(
    work: Path, name: str, members: int, folds: int, model: str, challenge=1, distinct=False
) -> Path:
    files = []
    for m in range(members):
        fold_files = []
        for k in range(folds):
            torch.manual_seed(m * 100 + k)
            net = create_model(model, **({"n_filters": 20 + 2 * m} if distinct else {}))
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


def _run(
    work: Path, zip_path: Path, files: list[Path], batch: int, route: str
) -> tuple[float, dict, np.ndarray]:
    unpacked = work / f"{zip_path.stem}_{route}"
    unpacked.mkdir()
    unpack_submission(zip_path, unpacked)
    if route == "plain":
        entry = unpacked / "submission.py"
        text = entry.read_text()
        if FAST_LINE not in text:
            raise SystemExit(f"{entry} has no line {FAST_LINE.strip()!r} to switch off")
        entry.write_text(text.replace(FAST_LINE, "FAST_SMALL_BATCHES = 0\n"))
    out = work / f"{zip_path.stem}_{route}.npy"
    t0 = time.perf_counter()
    timing = run_submission(unpacked, 1, files, out, batch)
    return time.perf_counter() - t0, timing, np.load(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=15)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--windows", type=int, default=15_000)
    ap.add_argument("--model", default="softargmax_tcn")
    ap.add_argument("--batch-size", type=int, default=FAST_BATCH, help="1 is the scorer's")
    ap.add_argument("--distinct-configs", action="store_true", help="n_filters = 20 + 2m")
    ap.add_argument(
        "--threads", type=int, default=0, help="OMP_NUM_THREADS for the scorer's processes"
    )
    args = ap.parse_args()
    if args.threads:  # the scorer's processes inherit it; torch reads it when it starts
        os.environ["OMP_NUM_THREADS"] = str(args.threads)

    work = Path(tempfile.mkdtemp(prefix="eegtune_inference_"))
    rng = np.random.default_rng(0)
    files = []
    for start in range(0, args.windows, 1000):
        n = min(1000, args.windows - start)
        path = work / f"rec{start:06d}.npy"
        np.save(path, (rng.standard_normal((n, 129, 200)) * 10).astype(np.float32))
        files.append(path)
    big = _ensemble(work, "big", args.members, args.folds, args.model, 1, args.distinct_configs)
    one = _ensemble(work, "one", 1, 1, args.model)
    mean_c2 = _ensemble(work, "mean_c2", 0, 0, args.model, challenge=2)  # unused slot
    big_zip = export_submission(big, mean_c2, work / "big.zip")
    one_zip = export_submission(one, mean_c2, work / "one.zip")

    runs = {}  # (zip, route) -> (wall seconds, timing, predictions)
    for route in ("plain", "fast"):
        runs["one", route] = _run(work, one_zip.path, files, args.batch_size, route)
    for route in ("plain", "fast"):
        runs["big", route] = _run(work, big_zip.path, files, args.batch_size, route)
    n_models = args.members * args.folds
    configs = "distinct configs per member" if args.distinct_configs else "one config"
    threads = os.environ.get("OMP_NUM_THREADS", "torch's default")
    print(
        f"{args.windows} windows, batch {args.batch_size}, {args.members} members × "
        f"{args.folds} folds of {args.model} ({configs}) = {n_models} fold models, "
        f"threads: {threads}"
    )
    print(f"zip size: {big_zip.size_bytes / 2**20:.1f} MiB ({one_zip.size_bytes / 2**20:.2f} MiB "
          f"for one model)")  # fmt: skip
    for (which, route), (wall, timing, _) in runs.items():
        label = f"{'1 model' if which == 'one' else 'ensemble'}, {route}"
        share = timing["model_seconds"] / timing["total_seconds"]
        print(
            f"{label:<15} {wall:7.1f} s wall (subprocess included), "
            f"{args.windows / wall:8.1f} windows/s, {share:.0%} of the process inside the models"
        )
    for route in ("plain", "fast"):
        big_s, one_s = (
            runs["big", route][1]["model_seconds"],
            runs["one", route][1]["model_seconds"],
        )
        print(f"{route}: ensemble model time / ({n_models} × one model's): "
              f"{big_s / (n_models * one_s):.2f}")  # fmt: skip
    for which in ("one", "big"):
        (plain_wall, plain_timing, plain_pred), (fast_wall, fast_timing, fast_pred) = (
            runs[which, "plain"],
            runs[which, "fast"],
        )
        speedup = plain_timing["model_seconds"] / fast_timing["model_seconds"]
        print(
            f"{'1 model' if which == 'one' else 'ensemble'}: plain / fast model time "
            f"{speedup:.2f}, wall {plain_wall / fast_wall:.2f}; "
            f"largest prediction gap {np.abs(plain_pred - fast_pred).max():.1e}"
        )
    projected = runs["big", "fast"][0] * 15_000 / args.windows
    goal = "met" if projected <= 120 else "missed"
    how = "measured" if args.windows == 15_000 else "projected from this run's rate"
    print(f"goal <= 120 s for 15,000 windows: {goal} ({projected:.0f} s, {how}, fast route)")


if __name__ == "__main__":
    main()

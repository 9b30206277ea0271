"""Peak memory of the whole machine during a search, against the store's window bytes.

For each store size (Challenge 2, synthetic CCD subjects) and each data mode, a child
process runs a 2-trial, ``--folds``-fold, one-epoch search on a local 2-CPU Ray, on the
experiment's fold pool (``--train``: a TorchTrainer per trial), while this process
samples the machine's memory in use (MemTotal - MemAvailable: every Ray process, the
object store's shared memory, the driver) four times a second. The figure is the peak
above the idle machine, divided by the store's windows as float32.

Goals: memory mode at most 1.5x the windows; stream mode flat as the data grows (the
larger store's peak at most 1.2x the smaller's).

    .venv/bin/python benchmarks/memory_scale.py --subjects 15 60
    # subjects of real recording length, under the real R1 metadata:
    .venv/bin/python benchmarks/memory_scale.py --subjects 29 --folds 3 --modes memory \
        --skeleton ../shared/hbn-r1-metadata
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from eegtune.data.prepare import PrepareOptions, prepare
from eegtune.data.synthetic import SynthOptions, synthesize
from eegtune.training.data_modes import available_memory, gib, store_size

TINY = {
    "model.d_model": 16, "model.n_heads": 2, "model.n_layers": 1, "model.dropout": 0.1,
    "model.head_ratio": 0.1, "model.pattern": "blocked",
    "lr": 1e-3, "weight_decay": 1e-3, "batch_size": 64,
}  # fmt: skip


def used() -> int:
    total = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return total - available_memory()


def child(store: str, mode: str, out: str, folds: str, layout: str) -> None:
    """The search, in its own process so that everything it starts ends with it."""
    import ray

    from eegtune.distributed.resources import plan_resources
    from eegtune.distributed.runtime import start_ray
    from eegtune.distributed.tune import TuneJob, run_tune

    start_ray(num_cpus=2)
    try:
        k = int(folds)
        job = TuneJob(store=store, challenge=2, space="sparse_attention", n_trials=2, n_folds=k,
                      name="scale", storage_path=out, max_epochs=1, scheduler="fifo",
                      data_mode=mode)  # fmt: skip
        plan = plan_resources(2, n_folds=k, pool=layout == "pool")
        table = run_tune(job, plan, verbose=0, points_to_evaluate=[TINY, TINY])
        assert (table["status"] == "COMPLETE").all(), table
    finally:
        ray.shutdown()


def measure(store: Path, mode: str, folds: int, layout: str) -> tuple[int, float]:
    """Peak bytes above the idle machine while the child searches, and its seconds."""
    idle, peak, done = used(), 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.25):
            peak = max(peak, used())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    out = tempfile.mkdtemp(prefix="eegtune-scale-runs-")
    subprocess.run(
        [sys.executable, __file__, "--child", str(store), mode, out, str(folds), layout],
        check=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return peak - idle, seconds


def make_store(n_subjects: int, skeleton: Path | None) -> Path:
    work = Path(tempfile.mkdtemp(prefix=f"eegtune-scale-{n_subjects}-"))
    options = SynthOptions(out=work / "bids", n_subjects=n_subjects, skeleton=skeleton,
                           tasks=("contrastChangeDetection",))  # fmt: skip
    synthesize(options, progress=False)
    roots = sorted((work / "bids").glob("R*_L100_bdf"))
    prepare(roots, work / "store", PrepareOptions(challenges=(2,)))
    return work / "store"


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:7])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=[15, 60])
    parser.add_argument("--modes", nargs="+", default=["memory", "stream"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--skeleton", type=Path, help="real metadata: real recording lengths")
    parser.add_argument("--train", action="store_true", help="a TorchTrainer per trial")
    args = parser.parse_args()
    layout = "train" if args.train else "pool"
    results = []
    for n in args.subjects:
        store = make_store(n, args.skeleton)
        size = store_size(store, 2)
        for mode in args.modes:
            peak, seconds = measure(store, mode, args.folds, layout)
            results.append((n, size, mode, peak, seconds))
            print(json.dumps({"subjects": n, "mode": mode, "peak": peak, "s": seconds}))
    how = "a TorchTrainer per trial" if args.train else "the fold pool"
    print(f"2 trials × {args.folds} folds × 1 epoch, sparse_attention (d_model 16), local "
          f"2-CPU Ray, {how}")  # fmt: skip
    print("| subjects | windows | window bytes | mode | peak above idle | ratio | seconds |")
    print("|---|---|---|---|---|---|---|")
    for n, size, mode, peak, seconds in results:
        print(f"| {n} | {size.windows} | {gib(size.float32_bytes)} | {mode} | {gib(peak)} "
              f"| {peak / size.float32_bytes:.2f}x | {seconds:.0f} |")  # fmt: skip
    for mode in args.modes:
        peaks = [peak for _, _, m, peak, _ in results if m == mode]
        if len(peaks) > 1:
            print(f"{mode}: larger store's peak / smaller's = {peaks[-1] / peaks[0]:.2f}x")


if __name__ == "__main__":
    main()

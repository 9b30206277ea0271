"""Peak memory of the whole machine during a search, against the store's window bytes.

For each store size (Challenge 2, synthetic CCD subjects) and each data mode, a child
process runs a 2-trial, 5-fold, one-epoch search on a local 2-CPU Ray while this process
samples the machine's memory in use (MemTotal - MemAvailable: every Ray process, the
object store's shared memory, the driver) four times a second. The figure is the peak
above the idle machine, divided by the store's windows as float32.

Goals: memory mode at most 1.5x the windows; stream mode flat as the data grows (the
larger store's peak at most 1.2x the smaller's).

    .venv/bin/python benchmarks/memory_scale.py --subjects 15 60
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


def child(store: str, mode: str, out: str) -> None:
    """The search, in its own process so that everything it starts ends with it."""
    import ray

    from eegtune.distributed.resources import plan_resources
    from eegtune.distributed.runtime import start_ray
    from eegtune.distributed.tune import TuneJob, run_tune

    start_ray(num_cpus=2)
    try:
        job = TuneJob(store=store, challenge=2, space="sparse_attention", n_trials=2, n_folds=5,
                      name="scale", storage_path=out, max_epochs=1, scheduler="fifo",
                      data_mode=mode)  # fmt: skip
        table = run_tune(job, plan_resources(2, n_folds=5), verbose=0,
                         points_to_evaluate=[TINY, TINY])  # fmt: skip
        assert (table["status"] == "COMPLETE").all(), table
    finally:
        ray.shutdown()


def measure(store: Path, mode: str) -> tuple[int, float]:
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
        [sys.executable, __file__, "--child", str(store), mode, out], check=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return peak - idle, seconds


def make_store(n_subjects: int) -> Path:
    work = Path(tempfile.mkdtemp(prefix=f"eegtune-scale-{n_subjects}-"))
    synthesize(
        SynthOptions(out=work / "bids", n_subjects=n_subjects, tasks=("contrastChangeDetection",)),
        progress=False,
    )
    prepare([work / "bids"], work / "store", PrepareOptions(challenges=(2,)))
    return work / "store"


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, nargs=2, default=[15, 60])
    parser.add_argument("--modes", nargs="+", default=["memory", "stream"])
    args = parser.parse_args()
    results = []
    for n in args.subjects:
        store = make_store(n)
        size = store_size(store, 2)
        for mode in args.modes:
            peak, seconds = measure(store, mode)
            results.append((n, size, mode, peak, seconds))
            print(json.dumps({"subjects": n, "mode": mode, "peak": peak, "s": seconds}))
    print("2 trials × 5 folds × 1 epoch, sparse_attention (d_model 16), local 2-CPU Ray")
    print("| subjects | windows | window bytes | mode | peak above idle | ratio | seconds |")
    print("|---|---|---|---|---|---|---|")
    for n, size, mode, peak, seconds in results:
        print(f"| {n} | {size.windows} | {gib(size.float32_bytes)} | {mode} | {gib(peak)} "
              f"| {peak / size.float32_bytes:.2f}x | {seconds:.0f} |")  # fmt: skip
    for mode in args.modes:
        peaks = [peak for _, _, m, peak, _ in results if m == mode]
        print(f"{mode}: larger store's peak / smaller's = {peaks[-1] / peaks[0]:.2f}x")


if __name__ == "__main__":
    main()

"""Peak memory of the whole machine during a search, against the store's window bytes.

For each store size (Challenge 2, synthetic CCD subjects) and each data mode, a child
process runs a 2-trial, ``--folds``-fold, one-epoch search on a local 2-CPU Ray, on the
experiment's fold pool (``--train``: a TorchTrainer per trial), while this process
samples the machine's memory in use (MemTotal - MemAvailable: every Ray process, the
object store's shared memory, the driver) four times a second. The figure is the peak
above the idle machine, divided by the store's windows as float32.

Goals: memory mode at most 1.5x the windows; stream mode flat as the data grows (the
larger store's peak at most 1.2x the smaller's).

``--loader both`` runs memory mode once with each of :func:`share_windows`'s loaders
(Ray tasks, then Ray Data), ``--repeats`` times over, and prints Ray Data's figures
over the tasks' (medians): the load's seconds (the search's own call),
the peak while it loads, and the whole search's peak. Each peak is measured twice: the
machine's, above idle, and (in brackets) the search's own processes' (:func:`own_memory`),
which other work on a shared machine does not move.

    .venv/bin/python benchmarks/memory_scale.py --subjects 15 60
    # subjects of real recording length, under the real R1 metadata:
    .venv/bin/python benchmarks/memory_scale.py --subjects 29 --folds 3 --modes memory \
        --skeleton ../shared/hbn-r1-metadata
    .venv/bin/python benchmarks/memory_scale.py --subjects 15 60 --modes memory \
        --folds 2 --loader both --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from eegtune.data.prepare import PrepareOptions, prepare
from eegtune.data.synthetic import SynthOptions, synthesize
from eegtune.distributed.shared_windows import DEFAULT_LOADER, LOADERS
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


def own_memory(root: int) -> int:
    """Memory of ``root`` and its descendants (the child's Ray: GCS, raylet, workers),
    whatever else the machine runs: their anonymous memory (proportional: Pss_Anon) plus
    the pages of Ray's object store file, counted once."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a process that ended meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    total, stores, todo = 0, set(), [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        except OSError:
            continue
        total += next(int(r.split()[1]) * 1024 for r in rollup if r.startswith("Pss_Anon:"))
        # The store is a deleted /dev/shm file mapped by the raylet and the workers: its
        # allocated blocks are the store's bytes in use, whoever touched them.
        stores.update(
            f"/proc/{pid}/map_files/{m.split()[0]}" for m in maps if "/dev/shm/plasma" in m
        )
    inodes = {}
    for path in stores:
        try:
            st = Path(path).stat()
        except OSError:
            continue
        inodes[st.st_ino] = st.st_blocks * 512
    return total + sum(inodes.values())


def child(store: str, mode: str, out: str, folds: str, layout: str, loader: str) -> None:
    """The search, in its own process so that everything it starts ends with it; the
    memory-mode load's wall-clock span goes to ``out/load.json``."""
    import ray

    import eegtune.distributed.train as train_module
    import eegtune.distributed.tune as tune_module
    from eegtune.distributed.resources import plan_resources
    from eegtune.distributed.runtime import start_ray
    from eegtune.distributed.tune import TuneJob, run_tune

    share = tune_module.share_windows

    def timed_share(*args, **kwargs):
        start = time.time()
        shared = share(*args, **kwargs, loader=loader)
        Path(out, "load.json").write_text(json.dumps({"start": start, "end": time.time()}))
        return shared

    # The search's own call (a TorchTrainer per trial: each trial's), with this loader.
    tune_module.share_windows = train_module.share_windows = timed_share
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


@dataclass
class Run:
    subjects: int
    mode: str
    loader: str  # "-" in stream mode, which loads nothing
    peak: int  # bytes above the idle machine, over the whole search
    own_peak: int  # the search's own processes (own_memory), over the whole search
    seconds: float  # the whole search
    load_peak: int | None = None  # bytes above idle while memory mode loads
    load_own_peak: int | None = None
    load_seconds: float | None = None


def measure(store: Path, n: int, mode: str, folds: int, layout: str, loader: str) -> Run:
    """Peak bytes above the idle machine while the child searches, and its seconds."""
    idle, samples, done = used(), [], threading.Event()
    out = Path(tempfile.mkdtemp(prefix="eegtune-scale-runs-"))
    start = time.perf_counter()
    log = (out / "child.log").open("w")
    search = subprocess.Popen(
        [sys.executable, __file__, "--child", str(store), mode, str(out), str(folds), layout,
         loader],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def sample() -> None:
        while not done.wait(0.25):
            samples.append((time.time(), used() - idle, own_memory(search.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    failed = search.wait() != 0
    log.close()
    if failed:
        raise RuntimeError(f"the {mode} search failed: see {out / 'child.log'}")
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    run = Run(n, mode, loader if mode == "memory" else "-", max(u for _, u, _ in samples),
              max(o for _, _, o in samples), seconds)  # fmt: skip
    if (out / "load.json").exists():
        load = json.loads((out / "load.json").read_text())
        during = [(u, o) for t, u, o in samples if load["start"] <= t <= load["end"] + 0.25]
        run.load_seconds = load["end"] - load["start"]
        run.load_peak = max(u for u, _ in during)
        run.load_own_peak = max(o for _, o in during)
    return run


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
        child(*sys.argv[2:8])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=[15, 60])
    parser.add_argument("--modes", nargs="+", default=["memory", "stream"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--skeleton", type=Path, help="real metadata: real recording lengths")
    parser.add_argument("--train", action="store_true", help="a TorchTrainer per trial")
    parser.add_argument(
        "--loader",
        choices=[*LOADERS, "both"],
        default=DEFAULT_LOADER,
        help="memory mode's loader; both: each in turn, with their ratios",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of each mode and loader")
    args = parser.parse_args()
    layout = "train" if args.train else "pool"
    loaders = list(LOADERS) if args.loader == "both" else [args.loader]
    runs, sizes = [], {}
    for n in args.subjects:
        store = make_store(n, args.skeleton)
        sizes[n] = store_size(store, 2)
        for _ in range(args.repeats):
            for mode in args.modes:
                for loader in loaders if mode == "memory" else [DEFAULT_LOADER]:
                    runs.append(measure(store, n, mode, args.folds, layout, loader))
                    print(json.dumps(asdict(runs[-1])), flush=True)
    how = "a TorchTrainer per trial" if args.train else "the fold pool"
    print(f"2 trials × {args.folds} folds × 1 epoch, sparse_attention (d_model 16), local "
          f"2-CPU Ray, {how}")  # fmt: skip
    print_table(runs, sizes)
    for mode in args.modes:
        if len(args.subjects) > 1:
            first, last = (
                _median(r.peak for r in runs
                        if r.mode == mode and r.subjects == n and r.loader in ("-", loaders[0]))
                for n in (args.subjects[0], args.subjects[-1])
            )  # fmt: skip
            print(f"{mode}: larger store's peak / smaller's = {last / first:.2f}x")
    if len(loaders) > 1 and "memory" in args.modes:
        print_loader_ratios(runs, args.subjects)


def print_table(runs: list[Run], sizes: dict) -> None:
    print("| subjects | windows | window bytes | mode | loader | load s | peak while loading "
          "(own) | peak above idle (own) | ratio | seconds |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        size = sizes[r.subjects]
        load_s = "-" if r.load_seconds is None else f"{r.load_seconds:.1f}"
        load_peak = "-" if r.load_peak is None else f"{gib(r.load_peak)} ({gib(r.load_own_peak)})"
        print(f"| {r.subjects} | {size.windows} | {gib(size.float32_bytes)} | {r.mode} "
              f"| {r.loader} | {load_s} | {load_peak} | {gib(r.peak)} ({gib(r.own_peak)}) "
              f"| {r.peak / size.float32_bytes:.2f}x | {r.seconds:.0f} |")  # fmt: skip


def print_loader_ratios(runs: list[Run], subjects: list[int]) -> None:
    """Ray Data over the tasks, medians of the repeats: above 1.10 is the 10% it may cost.
    "own": the search's processes only (:func:`own_memory`), which a shared machine's
    other work does not move."""
    metrics = ["load_seconds", "load_peak", "load_own_peak", "peak", "own_peak"]
    print("| subjects | ray_data / tasks: load s | peak while loading | (own) | search peak "
          "| (own) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for n in subjects:
        by_loader = {name: [r for r in runs if r.subjects == n and r.loader == name]
                     for name in LOADERS}  # fmt: skip
        cells = []
        for metric in metrics:
            tasks, ray_data = (_median(getattr(r, metric) for r in by_loader[name])
                               for name in LOADERS)  # fmt: skip
            cells.append(f"{ray_data / tasks:.2f}x" if tasks else "-")
        print(f"| {n} | {' | '.join(cells)} |")


def _median(values) -> float:
    return float(statistics.median(values))


if __name__ == "__main__":
    main()

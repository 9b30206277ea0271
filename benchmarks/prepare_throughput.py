"""``prepare`` against the bare MNE read of the same files, side by side in one process.

Reading dominates the reference pipeline (CHALLENGE.md, "Performance facts"), so the
honest baseline for ``prepare`` is MNE's full read of every recording and nothing else.
The ratio says what the trial table, windowing, Parquet writing, checksums and the
manifest add on top. Runs alternate (read, prepare, read, prepare, ...) and the medians
are compared, because these machines are noisy.

    .venv/bin/python benchmarks/prepare_throughput.py --subjects 6 --repeats 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import mne

from eegtune.data.bids import discover_recordings
from eegtune.data.prepare import PrepareOptions, prepare
from eegtune.data.synthetic import SynthOptions, synthesize


def mne_read_all(paths: list[Path]) -> float:
    start = time.perf_counter()
    for p in paths:
        mne.io.read_raw_bdf(p, preload=True, verbose="error").get_data()
    return time.perf_counter() - start


def prepare_all(bids: Path, store: Path, workers: int) -> float:
    shutil.rmtree(store, ignore_errors=True)
    start = time.perf_counter()
    prepare([bids], store, PrepareOptions(workers=workers))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eegtune-prepare-bench-"))
    try:
        synthesize(
            SynthOptions(out=work, n_subjects=args.subjects, tasks=("contrastChangeDetection",)),
            progress=False,
        )
        bids = work / "R1_L100_bdf"
        paths = [r.path for r in discover_recordings(bids)]
        size_mb = sum(p.stat().st_size for p in paths) / 1e6
        reads, preps, preps2 = [], [], []
        for _ in range(args.repeats):
            reads.append(mne_read_all(paths))
            preps.append(prepare_all(bids, work / "store", workers=1))
            preps2.append(prepare_all(bids, work / "store", workers=2))
        read, prep, prep2 = (statistics.median(x) for x in (reads, preps, preps2))
        print(f"{len(paths)} CCD recordings, {size_mb:.0f} MB of BDF, median of {args.repeats}")
        print("| step | seconds | recordings/s | ratio to MNE read |")
        print("|---|---|---|---|")
        for name, t in (
            ("MNE read only (baseline)", read),
            ("prepare, 1 worker", prep),
            ("prepare, 2 workers", prep2),
        ):
            print(f"| {name} | {t:.2f} | {len(paths) / t:.1f} | {t / read:.2f}x |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

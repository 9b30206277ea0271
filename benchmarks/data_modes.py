"""Memory mode against stream mode on the same fold, with a model in the loop.

The fit subjects of fold 0 go through the same training step of the same model for the
same epochs three ways: held in this process (``eegtune cv``'s memory mode), read in
place from Ray's shared object store (memory mode under Ray), and streamed from the
Parquet files every epoch (stream mode). Each is also timed with the data alone, and
the mean number of distinct subjects per batch is counted for the full shuffle and for
the stream's buffer.

    .venv/bin/python benchmarks/data_modes.py --subjects 24 --epochs 3 --challenge 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _synthetic_store import synthetic_ccd_store

from eegtune.training.config import FoldJob, TrainConfig
from eegtune.training.fold_data import InMemoryFoldSource
from eegtune.training.fold_stream import StreamingFoldSource, stream_batches
from eegtune.training.train_func import build_model, fold_subjects

BATCH = 64


def run_epochs(source, epochs: int, model_name: str | None) -> float:
    """Windows per second over ``epochs`` passes of the fit set, 1 torch thread."""
    torch.set_num_threads(1)
    model = build_model(TrainConfig(model=model_name)) if model_name else None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3) if model is not None else None
    seen, start = 0, time.perf_counter()
    for epoch in range(epochs):
        for x, y in source.train_batches(BATCH, np.random.default_rng([0, epoch])):
            if model is not None:
                opt.zero_grad()
                model.loss(torch.from_numpy(x), torch.from_numpy(y)).backward()
                opt.step()
            seen += len(y)
    return seen / (time.perf_counter() - start)


def subjects_per_batch_shuffled(subjects: np.ndarray, epochs: int) -> float:
    """The full seeded permutation memory mode draws (fold_data.train_batches)."""
    counts = []
    for epoch in range(epochs):
        order = np.random.default_rng([0, epoch]).permutation(len(subjects))
        counts += [len(set(subjects[order[i : i + BATCH]])) for i in range(0, len(order), BATCH)]
    return float(np.mean(counts))


def subjects_per_batch_streamed(source: StreamingFoldSource, epochs: int, crop: bool) -> float:
    counts = []
    for epoch in range(epochs):
        rng = np.random.default_rng([0, epoch])
        counts += [len(set(s)) for _, _, s in stream_batches(source.fit.files, BATCH, rng, crop)]
    return float(np.mean(counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--challenge", type=int, choices=(1, 2), default=2)
    parser.add_argument("--model", default="sparse_attention")
    args = parser.parse_args()
    work = synthetic_ccd_store(args.subjects, prefix="eegtune-datamodes-")
    store = str(work / "store")
    subjects = fold_subjects(
        FoldJob(store=store, challenge=args.challenge, out_dir="", n_folds=5), TrainConfig()
    )
    sources = {"memory (in process)": InMemoryFoldSource(store, args.challenge, subjects)}

    import ray

    from eegtune.distributed.runtime import start_ray
    from eegtune.distributed.shared_windows import SharedFoldSource, share_windows

    start_ray(num_cpus=2)
    try:
        shared = share_windows(store, args.challenge)
        sources["memory (Ray object store)"] = SharedFoldSource(shared, args.challenge, subjects)
        sources["stream"] = StreamingFoldSource(store, args.challenge, subjects)
        rates = {
            name: (run_epochs(src, args.epochs, None), run_epochs(src, args.epochs, args.model))
            for name, src in sources.items()
        }
    finally:
        ray.shutdown()
    base = rates["memory (in process)"]
    n = len(sources["memory (in process)"].fit_targets())
    print(
        f"challenge {args.challenge}: {n} fit windows of {len(subjects.fit)} subjects, "
        f"batch {BATCH}, {args.epochs} epochs, {args.model}, 1 torch thread"
    )
    print("| source | data only, windows/s | with the model, windows/s | ratio to in-process |")
    print("|---|---|---|---|")
    for name, (data_only, with_model) in rates.items():
        print(f"| {name} | {data_only:.0f} | {with_model:.0f} | {with_model / base[1]:.2f}x |")
    fit_subjects = sources["memory (in process)"].fit.meta["subject"].to_numpy()
    shuffled = subjects_per_batch_shuffled(fit_subjects, args.epochs)
    streamed = subjects_per_batch_streamed(sources["stream"], args.epochs, args.challenge == 2)
    print(
        f"distinct subjects per batch of {BATCH}: full shuffle {shuffled:.1f}, "
        f"stream buffer {streamed:.1f} (of {len(subjects.fit)} fit subjects)"
    )


if __name__ == "__main__":
    main()

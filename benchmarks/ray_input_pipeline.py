"""Ray Data -> Ray Train windows/s against an in-memory loop, same model and data.

Both sides run the same fold (fit subjects of fold 0) through the same training step of
the same model for the same epochs: one through ``RayDataFoldSource`` inside a
one-worker TorchTrainer on a local Ray, one through ``InMemoryFoldSource`` in this
process. Each side is also timed with the data alone (no model), to show how much of the
gap is the input pipeline.

    .venv/bin/python benchmarks/ray_input_pipeline.py --subjects 24 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _synthetic_store import synthetic_ccd_store

from eegtune.training.config import FoldJob, TrainConfig
from eegtune.training.fold_data import InMemoryFoldSource
from eegtune.training.train_func import build_model, fold_subjects

BATCH = 64


def run_epochs(source, epochs: int, with_model: bool, threads: int) -> float:
    """Windows per second over ``epochs`` passes of the fit set."""
    torch.set_num_threads(threads)
    model = build_model(TrainConfig(model="softargmax_tcn")) if with_model else None
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


def ray_side(store: str, subjects, epochs: int, out: Path) -> dict[str, float]:
    import ray.train
    from ray.train.torch import TorchTrainer

    from eegtune.distributed.data import RayDataFoldSource, fold_datasets

    def loop(cfg):
        start = time.perf_counter()
        source = RayDataFoldSource(0, 1, subjects)
        rates = {
            "load_s": time.perf_counter() - start,
            "data_only": run_epochs(source, epochs, False, 1),
            "with_model": run_epochs(source, epochs, True, 1),
        }
        out.write_text(json.dumps(rates))
        ray.train.report(rates)

    trainer = TorchTrainer(
        loop,
        scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
        datasets=fold_datasets(store, 1, 0, subjects),
        dataset_config=ray.train.DataConfig(datasets_to_split=[]),
        run_config=ray.train.RunConfig(storage_path=tempfile.mkdtemp(), name="pipeline"),
    )
    trainer.fit()
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    work = synthetic_ccd_store(args.subjects, prefix="eegtune-pipeline-")
    store = str(work / "store")
    subjects = fold_subjects(
        FoldJob(store=store, challenge=1, out_dir="", n_folds=5), TrainConfig()
    )
    start = time.perf_counter()
    memory = InMemoryFoldSource(store, 1, subjects)
    local = {
        "load_s": time.perf_counter() - start,
        "data_only": run_epochs(memory, args.epochs, False, 1),
        "with_model": run_epochs(memory, args.epochs, True, 1),
    }
    import ray

    from eegtune.distributed.runtime import start_ray

    start_ray(num_cpus=2)
    try:
        remote = ray_side(store, subjects, args.epochs, work / "rates.json")
    finally:
        ray.shutdown()
    n = len(memory.fit_targets())
    print(f"{n} fit windows (129 x 200), batch {BATCH}, {args.epochs} epochs, 1 torch thread")
    print("| loop | in-memory windows/s | Ray Data -> Ray Train windows/s | ratio |")
    print("|---|---|---|---|")
    for key, label in (("data_only", "data only"), ("with_model", "softargmax_tcn train step")):
        print(
            f"| {label} | {local[key]:.0f} | {remote[key]:.0f} | {remote[key] / local[key]:.2f}x |"
        )
    print(
        f"one-time load of the fold (fit + inner validation): in memory {local['load_s']:.2f} s, "
        f"streamed from Ray Data {remote['load_s']:.2f} s"
    )


if __name__ == "__main__":
    main()

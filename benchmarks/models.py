"""Every registered model at its default hyperparameters on (64, 129, 200) raw-µV windows.

    PYTHONPATH=. .venv/bin/python benchmarks/models.py [--quick] [--repeats 5]

Reports parameter count, eval forward time (inference_mode) and one training step
(forward + loss + backward + AdamW step, train mode). Closed-form models report the time to
fit on the same 64 windows instead. Models are timed round-robin (noise hits them alike);
each cell is the median over repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch

from eegtune.models import EEGModel, create_model, list_models

BATCH, N_CHANS, N_TIMES = 64, 129, 200


def make_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = 20.0 * torch.randn(BATCH, N_CHANS, N_TIMES, generator=gen) + 10.0
    y = 1.6 + 0.4 * torch.randn(BATCH, generator=gen)
    return x, y


def steps(model: EEGModel, x: torch.Tensor, y: torch.Tensor) -> dict[str, Callable[[], None]]:
    def forward() -> None:
        model.eval()
        with torch.inference_mode():
            model(x)

    if not model.trainable_by_gradient:

        def fit() -> None:
            model.fit(x, y)  # type: ignore[attr-defined]

        fit()  # forward needs a fitted model
        return {"forward": forward, "fit": fit}

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        model.loss(x, y).backward()
        optimizer.step()

    return {"forward": forward, "train": train_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # EEGNeX's even "same"-padded kernels (braindecode's choice) make torch warn on every run.
    warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
    repeats = args.repeats or (2 if args.quick else 5)
    x, y = make_batch()
    torch.manual_seed(0)
    models = {name: create_model(name) for name in list_models()}
    fns = {name: steps(model, x, y) for name, model in models.items()}
    for per_model in fns.values():  # warm-up
        for fn in per_model.values():
            fn()
    times: dict[tuple[str, str], list[float]] = {
        (name, kind): [] for name, per_model in fns.items() for kind in per_model
    }
    start = time.perf_counter()
    for _ in range(repeats):
        for name, per_model in fns.items():
            for kind, fn in per_model.items():
                t0 = time.perf_counter()
                fn()
                times[(name, kind)].append(time.perf_counter() - t0)
    print(
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, batch {BATCH}×{N_CHANS}×"
        f"{N_TIMES}, median of {repeats} interleaved repeats\n"
    )
    print("| model | params | forward ms | train step ms | fit ms (closed form) |")
    print("|---|---:|---:|---:|---:|")
    for name, model in models.items():
        n_params = sum(p.numel() for p in model.parameters())
        n_state = sum(v.numel() for v in model.state_dict().values())
        med = {kind: 1e3 * statistics.median(times[(name, kind)]) for kind in fns[name]}
        params = f"{n_params:,}" if n_params else f"0 ({n_state:,} fitted values)"
        train = f"{med['train']:.1f}" if "train" in med else "–"
        fit = f"{med['fit']:.1f}" if "fit" in med else "–"
        print(f"| {name} | {params} | {med['forward']:.1f} | {train} | {fit} |")
    print(f"\nwall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

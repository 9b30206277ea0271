"""Windows per second of every gradient-trained model on each device and precision.

    PYTHONPATH=. .venv/bin/python benchmarks/device_throughput.py [--repeats 5] [--batch 64]

For each registered model at its default hyperparameters: one training step (forward,
loss, backward, AdamW step) and one inference batch on (B, 129, 200) windows, timed the
way ``train_func`` runs them (batches from numpy through ``to_device``, under
``autocast``). Settings: CPU fp32 (the baseline), CPU bf16, and CUDA fp32 and bf16 where
a GPU is visible. The settings are timed round-robin in one process, so machine noise
hits them alike; each cell is the median over repeats, and the ratio is against CPU fp32
in the same run.

What each setting costs in accuracy is measured first, on the freshly built models (same
seed, so the same weights in every setting): the largest gap between its inference
predictions and CPU fp32's on the batch, in ms of response time (outputs scaled as
``train_func`` scales them, 1.6 s ± 0.4 s), and the cosine between its training gradient
and CPU fp32's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from eegtune.models import create_model, get_model_class, list_models
from eegtune.training.devices import autocast, to_device

N_CHANS, N_TIMES = 129, 200


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timers(name: str, device: torch.device, precision: str, batch: int):
    rng = np.random.default_rng(0)
    x = (20.0 * rng.standard_normal((batch, N_CHANS, N_TIMES)) + 10.0).astype(np.float32)
    y = (1.6 + 0.4 * rng.standard_normal(batch)).astype(np.float32)
    torch.manual_seed(0)
    model = create_model(name).to(device)
    model.set_target_scale(1.6, 0.4)  # predictions in seconds, as train_func sets them
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def accuracy() -> tuple[np.ndarray, torch.Tensor]:
        """Predictions and one training gradient at the initial weights."""
        model.eval()
        with torch.inference_mode(), autocast(device, precision):
            pred = model(to_device(x, device)).float().cpu().numpy()
        model.train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same dropout masks in every setting
        with autocast(device, precision):
            loss = model.loss(to_device(x, device), to_device(y, device))
        loss.backward()
        grad = torch.cat([p.grad.flatten().float().cpu() for p in model.parameters()])
        model.zero_grad(set_to_none=True)
        return pred, grad

    def train() -> float:
        model.train()
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = model.loss(to_device(x, device), to_device(y, device))
        loss.backward()
        optimizer.step()
        _sync(device)
        return time.perf_counter() - t0

    @torch.inference_mode()
    def infer() -> float:
        model.eval()
        t0 = time.perf_counter()
        with autocast(device, precision):
            model(to_device(x, device)).float().cpu()
        return time.perf_counter() - t0

    return {"train": train, "infer": infer, "accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    settings = [(torch.device("cpu"), "32"), (torch.device("cpu"), "bf16")]
    if torch.cuda.is_available():
        settings += [(torch.device("cuda"), "32"), (torch.device("cuda"), "bf16")]
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    else:
        print("no CUDA device visible: CPU figures only")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch {args.batch}")
    models = [m for m in list_models() if get_model_class(m).trainable_by_gradient]
    head = (
        "model                 setting      train win/s  ×cpu32   infer win/s  ×cpu32"
        "  max |Δpred| ms  grad cosine"
    )
    print(head)
    for name in models:
        timers = {s: _timers(name, *s, args.batch) for s in settings}
        measured = {s: timers[s]["accuracy"]() for s in settings}
        pred32, grad32 = measured[settings[0]]
        gaps = {
            s: (
                1000 * float(np.abs(pred - pred32).max()),
                float(torch.nn.functional.cosine_similarity(grad, grad32, dim=0)),
            )
            for s, (pred, grad) in measured.items()
        }
        for step in timers.values():  # warm-up: allocator, kernels, autocast caches
            step["train"](), step["infer"]()
        times: dict[tuple, dict[str, list[float]]] = {
            s: {"train": [], "infer": []} for s in settings
        }
        for _ in range(args.repeats):
            for s in settings:
                for kind in ("train", "infer"):
                    times[s][kind].append(timers[s][kind]())
        rate = {
            s: {k: args.batch / statistics.median(v) for k, v in kinds.items()}
            for s, kinds in times.items()
        }
        base = rate[settings[0]]
        for (device, precision), r in rate.items():
            label = f"{device.type} {precision}"
            print(
                f"{name:<21} {label:<12} {r['train']:>11.0f} {r['train'] / base['train']:>7.2f}"
                f" {r['infer']:>13.0f} {r['infer'] / base['infer']:>7.2f}"
                f" {gaps[(device, precision)][0]:>15.2f} {gaps[(device, precision)][1]:>12.5f}"
            )


if __name__ == "__main__":
    main()

"""Sparse (GroupedSelfAttention) vs dense self-attention: FLOPs, wall time, speedup.

    PYTHONPATH=. .venv/bin/python benchmarks/attention.py           # full run (a few minutes)
    PYTHONPATH=. .venv/bin/python benchmarks/attention.py --quick   # smoke run

For each (d_model, N) the dense layer and every sparse variant share weights and input, and are
timed interleaved (round-robin, order rotated every repeat) in one process, so machine noise
hits them alike; each cell is the median over repeats. The FLOP ratio dense/sparse, counted
with FlopCounterMode over the whole layer (projections included), is the ideal speedup limit;
"eff" = measured speedup / FLOP ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import (
    FlopCounterMode,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from eegtune.models.grouped_attention import DenseSelfAttention, GroupedSelfAttention

aten = torch.ops.aten


# torch's counter knows the CUDA SDPA kernels but not the CPU flash kernel; same math.
def _cpu_sdpa_flop(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(q_shape, k_shape, v_shape)


def _cpu_sdpa_backward_flop(
    grad_shape, q_shape, k_shape, v_shape, *args, out_shape=None, **kw
) -> int:
    return sdpa_backward_flop_count(grad_shape, q_shape, k_shape, v_shape)


CPU_SDPA = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop,
}
SDPA_OPS = (
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_flash_attention_for_cpu_backward,
)
N_HEADS = 8


@dataclass(frozen=True)
class Variant:
    pattern: str
    head_ratio: float
    note: str

    def n_groups(self, n_tokens: int) -> int:
        return max(1, round(self.head_ratio * n_tokens))


VARIANTS = (
    Variant("blocked", 0.02, "g≈50"),
    Variant("strided", 0.02, "g≈50, gather"),
    Variant("blocked", 0.015, "g≈67, uneven: gather+mask"),
    Variant("blocked", 0.005, "g≈200"),
    Variant("blocked", 0.1, "g≈10 (model default)"),
)
QUICK_VARIANTS = (VARIANTS[0], VARIANTS[4])
BATCH = {50: 8, 200: 8, 1000: 4, 4000: 2}


def count_flops(fn: Callable[[], object]) -> tuple[int, int]:
    """(total FLOPs, FLOPs inside the attention kernel) of one call."""
    with FlopCounterMode(display=False, custom_mapping=CPU_SDPA) as counter:
        fn()
    per_op = counter.get_flop_counts()["Global"]
    core = sum(v for k, v in per_op.items() if k in SDPA_OPS)
    return counter.get_total_flops(), core


def make_steps(layer: nn.Module, x: Tensor) -> tuple[Callable[[], None], Callable[[], None]]:
    grad_out = torch.randn_like(x)

    def forward() -> None:
        with torch.no_grad():
            layer(x)

    def forward_backward() -> None:
        x_in = x.detach().requires_grad_(True)
        layer(x_in).backward(grad_out)
        layer.zero_grad(set_to_none=True)

    return forward, forward_backward


def calibrate(fn: Callable[[], None], min_time: float) -> int:
    """Inner iterations so one measurement lasts >= min_time (short calls are timer noise)."""
    fn()  # warm-up: allocator, thread pool, layout caches
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-6)
    return max(1, min(1000, round(min_time / once)))


def measure(fn: Callable[[], None], iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


@dataclass
class Row:
    d: int
    n: int
    batch: int
    variant: Variant
    n_groups: int
    group_size: int
    flop_ratio: dict[str, float]
    dense_ms: dict[str, float]
    sparse_ms: dict[str, float]


def bench_case(
    d: int, n: int, variants: tuple[Variant, ...], repeats: int, min_time: float
) -> list[Row]:
    torch.manual_seed(0)
    batch = BATCH[n]
    x = torch.randn(batch, n, d)
    dense = DenseSelfAttention(d, N_HEADS)
    layers: dict[str, nn.Module] = {"dense": dense}
    kept = [v for v in variants if v.n_groups(n) > 1]  # one group is the dense layer itself
    for v in kept:
        sparse = GroupedSelfAttention(d, N_HEADS, v.n_groups(n), pattern=v.pattern)
        sparse.load_state_dict(dense.state_dict())
        layers[f"{v.pattern}/{v.head_ratio}"] = sparse
    steps = {
        name: dict(zip(("fwd", "f+b"), make_steps(m, x), strict=True)) for name, m in layers.items()
    }
    flops = {
        name: {mode: count_flops(fn)[0] for mode, fn in s.items()} for name, s in steps.items()
    }
    iters = {
        (name, mode): calibrate(fn, min_time) for name, s in steps.items() for mode, fn in s.items()
    }
    times: dict[tuple[str, str], list[float]] = {key: [] for key in iters}
    order = list(steps)
    for rep in range(repeats):
        rotated = order[rep % len(order) :] + order[: rep % len(order)]
        for name in rotated:
            for mode, fn in steps[name].items():
                times[(name, mode)].append(measure(fn, iters[(name, mode)]))
    med = {key: 1e3 * statistics.median(v) for key, v in times.items()}
    rows = []
    for v in kept:
        name = f"{v.pattern}/{v.head_ratio}"
        g = -(-n // v.n_groups(n))
        rows.append(
            Row(
                d, n, batch, v, v.n_groups(n), g,
                flop_ratio={m: flops["dense"][m] / flops[name][m] for m in ("fwd", "f+b")},
                dense_ms={m: med[("dense", m)] for m in ("fwd", "f+b")},
                sparse_ms={m: med[(name, m)] for m in ("fwd", "f+b")},
            )
        )  # fmt: skip
    return rows


def print_table(rows: list[Row]) -> None:
    print(
        "| d | N | B | pattern | head_ratio | groups×size "
        "| fwd limit | fwd dense ms | fwd sparse ms | fwd speedup | fwd eff "
        "| f+b limit | f+b dense ms | f+b sparse ms | f+b speedup | f+b eff |"
    )
    print("|" + "---:|" * 3 + "---|---:|---|" + "---:|" * 10)
    for r in rows:
        cells = [
            f"{r.d}", f"{r.n}", f"{r.batch}", r.variant.pattern, f"{r.variant.head_ratio}",
            f"{r.n_groups}×{r.group_size}",
        ]  # fmt: skip
        for mode in ("fwd", "f+b"):
            speedup = r.dense_ms[mode] / r.sparse_ms[mode]
            limit = r.flop_ratio[mode]
            cells += [
                f"{limit:.2f}", f"{r.dense_ms[mode]:.2f}", f"{r.sparse_ms[mode]:.2f}",
                f"{speedup:.2f}", f"{speedup / limit:.2f}",
            ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")


def print_goal(rows: list[Row]) -> None:
    """Goal: measured speedup >= 0.8 x FLOP-ratio limit for N >= 1000."""
    for d in sorted({r.d for r in rows}):
        effs = [
            (r.dense_ms[m] / r.sparse_ms[m]) / r.flop_ratio[m]
            for r in rows
            if r.n >= 1000 and r.d == d
            for m in ("fwd", "f+b")
        ]
        if effs:
            met = sum(e >= 0.8 for e in effs)
            print(
                f"N>=1000, d={d}: eff median {statistics.median(effs):.2f}, min {min(effs):.2f};"
                f" eff>=0.8 in {met}/{len(effs)} cells"
            )


def print_n50_limits() -> None:
    """What grouping can possibly buy at the model's own sequence length (N=50 tokens)."""
    print("\nFLOP limits at N=50 (forward, B=1, 8 heads; g=1 is the extreme: no token mixing)")
    print("| d | group size g | groups | layer FLOP ratio | attention-core FLOP ratio |")
    print("|---:|---:|---:|---:|---:|")
    x_shapes = {64: torch.randn(1, 50, 64), 128: torch.randn(1, 50, 128)}
    for d, x in x_shapes.items():
        dense = DenseSelfAttention(d, N_HEADS)
        total_d, core_d = count_flops(lambda m=dense, x=x: m(x))
        for g in (25, 10, 5, 2, 1):
            sparse = GroupedSelfAttention(d, N_HEADS, 50 // g)
            total_s, core_s = count_flops(lambda m=sparse, x=x: m(x))
            print(f"| {d} | {g} | {50 // g} | {total_d / total_s:.2f} | {core_d / core_s:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        dims, lengths, variants = (128,), (50, 200, 1000), QUICK_VARIANTS
        repeats, min_time = args.repeats or 3, 0.01
    else:
        dims, lengths, variants = (128, 512), (50, 200, 1000, 4000), VARIANTS
        repeats, min_time = args.repeats or 7, 0.05
    print(
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, heads={N_HEADS}, "
        f"repeats={repeats}, median of interleaved runs\n"
    )
    rows: list[Row] = []
    start = time.perf_counter()
    for d in dims:
        for n in lengths:
            rows += bench_case(d, n, variants, repeats, min_time)
    print_table(rows)
    print()
    print_goal(rows)
    print_n50_limits()
    print(f"\nwall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

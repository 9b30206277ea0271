"""Does this CPU's bf16 convolution kernel compute what fp32 computes? One row per oneDNN ISA.

    PYTHONPATH=. .venv/bin/python benchmarks/cpu_bf16_kernels.py

For each ISA cap (``ONEDNN_MAX_CPU_ISA``: AMX, the AVX-512 bf16 instructions eegtune caps
at, AVX2 emulation) a fresh process (oneDNN picks its ISA once per process) runs, under
plain ``torch.autocast`` and so without eegtune's guard:

* the bad shape class: relative error of a bf16 conv against fp32 on bf16-rounded inputs,
  the worst over 2-12 input channels and 8-64 taps, and the kernel oneDNN named;
* EEGNeX at default size, batch 64, fresh weights: the largest prediction gap against
  fp32 in ms of response time, and the training gradients' cosine.

A cap above what the CPU has is lowered by oneDNN to what it has, so on a CPU without AMX
the first two rows match. A sound kernel shows errors of about 2e-3 and gaps of about 1 ms.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

CAPS = ("AVX512_CORE_AMX", "AVX512_CORE_BF16", "AVX2")

CHILD = r"""
import json, torch, torch.nn.functional as F
from eegtune.models import create_model
torch.manual_seed(0)
worst = 0.0
for ic in (2, 4, 8, 12):
    for taps in (8, 16, 32, 64):
        x, w = torch.randn(4, ic, 8, 200).bfloat16(), torch.randn(8, ic, 1, taps).bfloat16()
        ref = F.conv2d(x.float(), w.float())
        worst = max(worst, float((F.conv2d(x, w).float() - ref).norm() / ref.norm()))
model = create_model("eegnex")
model.set_target_scale(1.6, 0.4)
x, y = 20 * torch.randn(64, 129, 200) + 10, 1.6 + 0.4 * torch.randn(64)
runs = []
for bf16 in (False, True):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(x)
        loss = model.loss(x, y)
    loss.backward()
    runs.append((out.detach().float(), torch.cat([p.grad.flatten() for p in model.parameters()])))
(o32, g32), (o16, g16) = runs
print(json.dumps({
    "conv_error": worst,
    "gap_ms": 1000 * float((o16 - o32).abs().max()),
    "cosine": float(F.cosine_similarity(g16, g32, dim=0)),
}))
"""


def measure(cap: str) -> tuple[dict, str]:
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": cap, "ONEDNN_VERBOSE": "1"}
    run = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    )
    lines = run.stdout.splitlines()
    kernels = sorted(
        {ln.split(",")[6] for ln in lines if ",exec,cpu,convolution," in ln and "bf16" in ln}
    )
    # Below AVX-512 oneDNN has no bf16 convolution; torch then computes them itself.
    return json.loads(lines[-1]), " ".join(kernels) or "(none from oneDNN: torch's own)"


def main() -> None:
    print("ONEDNN_MAX_CPU_ISA   conv rel. error   EEGNeX max gap   grad cosine   bf16 kernels")
    for cap in CAPS:
        result, kernels = measure(cap)
        print(
            f"{cap:<20} {result['conv_error']:>15.4f} {result['gap_ms']:>13.2f} ms"
            f" {result['cosine']:>13.5f}   {kernels}"
        )


if __name__ == "__main__":
    main()

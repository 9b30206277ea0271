"""bf16 on the CPU: keep oneDNN off the AMX convolution kernels, and prove the kernels sound.

On CPUs with AMX (``amx_bf16``: Sapphire Rapids and later Xeons), oneDNN 3.12 (torch 2.13's
CPU build) runs bf16 convolutions on its AMX kernel ``brg_conv_fwd:avx10_1_512_amx``. That
kernel returns wrong numbers, not rounded ones, when a convolution has few input channels
(2-12, not 16 or more) and a wide, even kernel (8-64 taps) at stride 1: relative error about
1.0 against fp32. EEGNeX's temporal convolutions are exactly that shape (4 or 8 planes,
64 taps), so under bf16 autocast its response times moved by 58-135 ms and its gradients
pointed elsewhere (cosine 0.30). A wrong result is not a precision cost, so the fix is not
to keep EEGNeX in fp32 but to keep every convolution off that kernel.

oneDNN reads ``ONEDNN_MAX_CPU_ISA`` once, when the process creates its first oneDNN
primitive (any CPU convolution, fp32 included), and never again. :func:`cap_onednn_isa`
therefore runs when ``eegtune`` is imported: it caps oneDNN at ``AVX512_CORE_BF16``, the
AVX-512 bf16 dot-product instructions. Those are still native bf16 arithmetic, measured
correct on every shape above, and fp32 never used AMX, so fp32 is unchanged. The cost is
AMX's speed for bf16 on the CPU (softargmax_tcn's bf16 training went from 1.23x to 0.89x
of fp32's speed); ``--precision bf16`` is for GPUs, whose kernels are not oneDNN's.

If torch ran a convolution before eegtune was imported, or the user set the variable
(``ONEDNN_MAX_CPU_ISA=AVX512_CORE_AMX`` re-enables the kernel), the cap cannot act.
:func:`bf16_convolution_defect` then catches the wrong kernel with a probe of the known bad
shape, and ``--precision bf16`` on the CPU is refused with that reason instead of training
on wrong numbers. Neither function imports torch at eegtune's import time.
"""

from __future__ import annotations

import functools
import os
import platform

__all__ = ["ISA_CAP", "ISA_VARIABLES", "bf16_convolution_defect", "cap_onednn_isa"]

ISA_CAP = "AVX512_CORE_BF16"
# oneDNN's current name first; DNNL_ is the older spelling it still honours.
ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
# bf16 keeps 8 significant bits: a sound kernel is ~2e-3 off fp32 here, the AMX defect ~1.0.
PROBE_TOLERANCE = 0.02


def cap_onednn_isa() -> None:
    """Cap oneDNN at :data:`ISA_CAP` in this process and the processes it starts (Ray's
    workers inherit the environment), unless the user chose a cap. x86 only: the names are
    x86 ISAs, and oneDNN's other builds have no AMX kernels."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return
    if any(name in os.environ for name in ISA_VARIABLES):
        return
    os.environ[ISA_VARIABLES[0]] = ISA_CAP


@functools.cache
def bf16_convolution_defect() -> str | None:
    """Why this process's bf16 CPU convolutions cannot be trusted, or None when they agree
    with fp32 on bf16-rounded inputs. Run once per process (a few milliseconds); the answer
    cannot change, because oneDNN picks its kernels' ISA once."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    # The defect's shape class at its smallest: 4 input planes, 16 taps, stride 1.
    x = torch.randn(1, 4, 1, 64, generator=gen).bfloat16()
    weight = torch.randn(8, 4, 1, 16, generator=gen).bfloat16()
    with torch.autocast("cpu", enabled=False):
        expected = F.conv2d(x.float(), weight.float())
        got = F.conv2d(x, weight).float()
    error = float((got - expected).norm() / expected.norm())
    if error <= PROBE_TOLERANCE:
        return None
    chosen = ", ".join(f"{n}={os.environ[n]}" for n in ISA_VARIABLES if n in os.environ)
    return (
        f"bf16 convolutions on this CPU return wrong results (relative error {error:.2f} "
        f"against fp32 on a 4-channel, 16-tap probe): oneDNN is running its AMX kernel, "
        f"which is defective for such shapes (torch {torch.__version__}, "
        f"{chosen or 'no ISA cap set'}). eegtune sets {ISA_VARIABLES[0]}={ISA_CAP} when it is "
        f"imported before torch runs a convolution; import eegtune first and leave "
        f"{ISA_VARIABLES[0]} unset (or set it to {ISA_CAP}), or use --precision 32"
    )

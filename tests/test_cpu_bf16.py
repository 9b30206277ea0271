"""eegtune keeps bf16 convolutions off oneDNN's defective AMX kernel, and refuses bf16 on the
CPU where it cannot.

Each check that depends on oneDNN's kernel choice runs in a fresh process, because oneDNN
picks its ISA once per process, at its first primitive.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from eegtune import cpu_bf16
from eegtune.training import devices

X86 = platform.machine().lower() in ("x86_64", "amd64")
requires_x86 = pytest.mark.skipif(not X86, reason="oneDNN's ISA names are x86's")


def cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in cpu_bf16.ISA_VARIABLES}
    return subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


@requires_x86
def test_import_caps_onednn_unless_the_user_chose() -> None:
    code = "import os, eegtune; print(os.environ.get('ONEDNN_MAX_CPU_ISA'))"
    assert run_python(code).stdout.strip() == cpu_bf16.ISA_CAP
    assert run_python(code, ONEDNN_MAX_CPU_ISA="AVX2").stdout.strip() == "AVX2"
    # The older spelling is a choice too: no second, conflicting variable is added.
    assert run_python(code, DNNL_MAX_CPU_ISA="AVX2").stdout.strip() == "None"


# The defect's shape: 4 planes, 64 taps, as EEGNeX's second block; ONEDNN_VERBOSE names the
# kernel that ran it.
BAD_SHAPE_CONV = """
import eegtune, torch, torch.nn.functional as F
from eegtune.cpu_bf16 import bf16_convolution_defect
torch.manual_seed(0)
x, w = torch.randn(2, 4, 8, 200).bfloat16(), torch.randn(8, 4, 1, 64).bfloat16()
out, ref = F.conv2d(x, w).float(), F.conv2d(x.float(), w.float())
print("ERROR", float((out - ref).norm() / ref.norm()))
print("DEFECT", bf16_convolution_defect())
"""


@requires_x86
def test_no_amx_convolution_in_an_eegtune_process() -> None:
    run = run_python(BAD_SHAPE_CONV, ONEDNN_VERBOSE="1")
    assert run.returncode == 0, run.stderr[-2000:]
    kernels = {
        line.split(",")[6]
        for line in run.stdout.splitlines()
        if line.startswith("onednn_verbose") and ",exec,cpu,convolution," in line
    }
    assert kernels, run.stdout[-2000:]  # oneDNN ran the convolutions, and said with what
    assert not any("amx" in k for k in kernels), kernels
    error = float(next(ln for ln in run.stdout.splitlines() if ln.startswith("ERROR")).split()[1])
    assert error < cpu_bf16.PROBE_TOLERANCE, (error, kernels)
    assert "DEFECT None" in run.stdout


@pytest.mark.skipif("amx_bf16" not in cpu_flags(), reason="this CPU has no AMX (amx_bf16)")
def test_amx_kernel_is_refused_or_correct() -> None:
    """With AMX forced back on, either the probe refuses bf16, or the kernel computes the bad
    shape correctly (a fixed oneDNN): never wrong numbers in silence."""
    run = run_python(BAD_SHAPE_CONV, ONEDNN_MAX_CPU_ISA="AVX512_CORE_AMX")
    assert run.returncode == 0, run.stderr[-2000:]
    error = float(next(ln for ln in run.stdout.splitlines() if ln.startswith("ERROR")).split()[1])
    if error > cpu_bf16.PROBE_TOLERANCE:
        assert "wrong results" in run.stdout and "AVX512_CORE_AMX" in run.stdout, run.stdout
    else:
        assert "DEFECT None" in run.stdout


def test_probe_reports_a_wrong_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that is off by more than bf16's rounding is reported, naming the fix."""
    real = F.conv2d

    def wrong_in_bf16(x: torch.Tensor, w: torch.Tensor, *args: object) -> torch.Tensor:
        out = real(x, w, *args)  # type: ignore[arg-type]
        return out.flip(-1) if x.dtype == torch.bfloat16 else out

    monkeypatch.setattr(F, "conv2d", wrong_in_bf16)
    message = cpu_bf16.bf16_convolution_defect.__wrapped__()
    assert message and "wrong results" in message and cpu_bf16.ISA_CAP in message
    monkeypatch.setattr(F, "conv2d", real)
    assert cpu_bf16.bf16_convolution_defect.__wrapped__() is None


def test_bf16_autocast_refused_on_a_defective_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "bf16_convolution_defect", lambda: "the probe failed")
    with pytest.raises(ValueError, match="--precision bf16: the probe failed"):
        devices.autocast(torch.device("cpu"), "bf16")
    with devices.autocast(torch.device("cpu"), "32"):  # full precision is never refused
        pass
    # A GPU's bf16 does not go through oneDNN: the CPU probe has no say there.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that it has no CUDA to autocast
        assert isinstance(devices.autocast(torch.device("cuda"), "bf16"), torch.autocast)

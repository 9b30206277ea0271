"""Where a fold trains: the device, host-to-device copies and mixed precision.

``train_func`` stays one function for every device: it asks :func:`resolve_device` once,
moves the model there, and moves each batch with :func:`to_device`. Under Ray the fold
worker turns ``auto`` into the device Ray Train assigned it (see
``eegtune.distributed.train``) before ``train_func`` sees it.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np
import torch

from eegtune.cpu_bf16 import bf16_convolution_defect
from eegtune.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("32", "bf16")


def check_device_settings(device: str, precision: str) -> None:
    if device not in DEVICES and not re.fullmatch(r"cuda:\d+", device):
        raise ConfigError(f"device must be one of {DEVICES} (or cuda:N), got {device!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def resolve_device(name: str) -> torch.device:
    """``auto``: the first CUDA device this process sees, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {name}: this process sees no CUDA device (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda or 'no'}); use --device auto or cpu"
        )
    return device


def to_device(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """A numpy batch on ``device``; to a GPU through pinned memory, so the copy is
    asynchronous and overlaps the previous step's kernels."""
    tensor = torch.from_numpy(np.ascontiguousarray(x))
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast (matmuls and convolutions in bfloat16, reductions and the loss in
    float32), or nothing at full precision. On the CPU, refused where this process's bf16
    convolutions compute wrong numbers (:mod:`eegtune.cpu_bf16`)."""
    if precision == "32":
        return contextlib.nullcontext()
    if device.type == "cpu" and (defect := bf16_convolution_defect()):
        raise ConfigError(f"--precision bf16: {defect}")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def model_device(model: torch.nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return torch.device("cpu") if param is None else param.device


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict on the CPU, so a checkpoint written on a GPU loads anywhere."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}

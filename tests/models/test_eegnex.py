"""eegnex: braindecode's EEGNeX structure and parameter count, reproduced in plain torch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eegtune.models import create_model

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")

# braindecode.models.EEGNeX(n_chans=129, n_outputs=1, n_times=200), module by module, with
# braindecode's classes mapped to ours: Rearrange -> AddPlaneDim,
# Conv2dWithConstraint -> MaxNormConv2d, LinearWithConstraint -> MaxNormLinear.
BRAINDECODE_LAYERS = [
    ("block_1.0", "AddPlaneDim", None),
    ("block_1.1", "Conv2d", (8, 1, 1, 64)),
    ("block_1.2", "BatchNorm2d", (8,)),
    ("block_2.0", "Conv2d", (32, 8, 1, 64)),
    ("block_2.1", "BatchNorm2d", (32,)),
    ("block_3.0", "MaxNormConv2d", (64, 1, 129, 1)),
    ("block_3.1", "BatchNorm2d", (64,)),
    ("block_3.2", "ELU", None),
    ("block_3.3", "AvgPool2d", None),
    ("block_3.4", "Dropout", None),
    ("block_4.0", "Conv2d", (32, 64, 1, 16)),
    ("block_4.1", "BatchNorm2d", (32,)),
    ("block_5.0", "Conv2d", (8, 32, 1, 16)),
    ("block_5.1", "BatchNorm2d", (8,)),
    ("block_5.2", "ELU", None),
    ("block_5.3", "AvgPool2d", None),
    ("block_5.4", "Dropout", None),
    ("block_5.5", "Flatten", None),
    ("final_layer", "MaxNormLinear", (1, 48)),
]


def layer_table(model: nn.Module) -> list[tuple[str, str, tuple[int, ...] | None]]:
    rows = []
    for name, module in model.named_modules():
        if name in ("", "norm") or list(module.children()):
            continue
        weight = getattr(module, "weight", None)
        rows.append(
            (name, type(module).__name__, tuple(weight.shape) if weight is not None else None)
        )
    return rows


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_matches_braindecode() -> None:
    assert n_params(create_model("eegnex", drop_cz=False)) == 62_353
    # drop_cz feeds 128 channels: only the depthwise spatial conv shrinks, by 64 weights.
    assert n_params(create_model("eegnex")) == 62_353 - 64


def test_layer_structure_matches_braindecode() -> None:
    model = create_model("eegnex", drop_cz=False)
    assert layer_table(model) == BRAINDECODE_LAYERS
    conv4, conv5 = model.block_4[0], model.block_5[0]
    assert (conv4.dilation, conv5.dilation) == ((1, 2), (1, 4))
    assert conv4.padding == conv5.padding == model.block_1[1].padding == "same"
    assert model.block_3[0].groups == 32 and model.block_3[0].bias is None
    assert model.block_3[3].kernel_size == (1, 4) and model.block_3[3].padding == (0, 1)
    assert model.block_5[3].kernel_size == (1, 8) and model.block_5[3].padding == (0, 1)
    assert model.block_3[4].p == 0.5
    assert (model.block_3[0].max_norm, model.final_layer.max_norm) == (1.0, 0.25)


def test_intermediate_shapes(raw_windows) -> None:
    model = create_model("eegnex").eval()
    with torch.inference_mode():
        z = model.norm(raw_windows(2))
        h3 = model.block_3(model.block_2(model.block_1(z)))
        h5 = model.block_5(model.block_4(h3))
    assert h3.shape == (2, 64, 1, 50)
    assert h5.shape == (2, 48)


def test_max_norm_is_applied_without_mutating_weights(raw_windows) -> None:
    torch.manual_seed(0)
    model = create_model("eegnex").eval()
    with torch.no_grad():
        model.block_3[0].weight.mul_(10.0)
        model.final_layer.weight.mul_(10.0)
    stored = {k: v.clone() for k, v in model.state_dict().items()}
    reference = create_model("eegnex").eval()
    reference.load_state_dict(stored)
    with torch.no_grad():
        for layer, bound in ((reference.block_3[0], 1.0), (reference.final_layer, 0.25)):
            layer.weight.copy_(torch.renorm(layer.weight, 2, 0, bound))
            assert layer.weight.flatten(1).norm(dim=1).max() <= bound + 1e-5
    x = raw_windows(2)
    with torch.inference_mode():
        out = model(x)
        torch.testing.assert_close(out, reference(x))
    # The constraint acts on the fly; the stored (oversized) weights are left alone.
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stored.items())
    unconstrained = create_model("eegnex", max_norm_conv=100.0, max_norm_linear=100.0).eval()
    unconstrained.load_state_dict(stored)
    with torch.inference_mode():
        assert not torch.allclose(unconstrained(x), out)


def test_other_shapes_compute_the_flattened_size() -> None:
    model = create_model("eegnex", n_chans=33, n_times=256, n_outputs=3).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 33, 256)).shape == (1, 3)
    assert model.in_features == 8 * 8

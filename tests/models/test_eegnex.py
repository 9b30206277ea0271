"""eegnex: braindecode's EEGNeX structure and parameter count, reproduced in plain torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from eegtune.models import create_model
from eegtune.models.eegnex import MaxNormConv2d, MaxNormLinear

from .conftest import SMALL_SHAPE, TINY, bump_windows

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


def _effective_weight(layer: nn.Module) -> torch.Tensor:
    """The weight ``layer``'s own forward uses, read off its response to unit inputs.

    Both constrained layers are linear in their input, so feeding basis vectors through
    the real forward (whatever it does to the stored weight) recovers the weight applied.
    """
    with torch.no_grad():
        if isinstance(layer, MaxNormLinear):
            basis = torch.eye(layer.in_features)
            out = layer(basis) - layer(torch.zeros(1, layer.in_features))
            return out.T  # (out_features, in_features), like layer.weight
        assert isinstance(layer, MaxNormConv2d) and layer.bias is None
        # Depthwise (n_chans, 1) kernels: unit impulse on channel c in every input group.
        n_in, n_chans = layer.in_channels, layer.kernel_size[0]
        basis = torch.eye(n_chans)[:, None, :, None].expand(n_chans, n_in, n_chans, 1)
        out = layer(basis.contiguous())  # (n_chans, out_channels, 1, 1)
        return out[:, :, 0, 0].T[:, None, :, None]  # (out_channels, 1, n_chans, 1)


def test_max_norm_holds_in_the_forward_pass_after_a_training_step() -> None:
    torch.manual_seed(0)
    model = create_model("eegnex", **TINY["eegnex"], **SMALL_SHAPE)
    constrained = {"block_3.0": (model.block_3[0], 1.0), "final_layer": (model.final_layer, 0.25)}
    assert [type(m) for m, _ in constrained.values()] == [MaxNormConv2d, MaxNormLinear]
    x, y = bump_windows(16, n_chans=9, n_times=100)

    # One real optimiser step, large enough that the stored weights grow past the limits:
    # Adam's first step moves every weight by about lr, whatever the gradient's size.
    before = {name: m.weight.detach().clone() for name, (m, _) in constrained.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1.0, weight_decay=0.0)
    model.train()
    F.mse_loss(model(x)[:, 0], y).backward()
    opt.step()
    stepped = {name: m.weight.detach().clone() for name, (m, _) in constrained.items()}

    # What the layers are fed and give back inside a real forward of the whole model.
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [
        m.register_forward_hook(
            lambda mod, inp, out, name=name: seen.__setitem__(name, (inp[0], out))
        )
        for name, (m, _) in constrained.items()
    ]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()

    for name, (layer, bound) in constrained.items():
        raw = stepped[name]
        assert not torch.equal(raw, before[name]), f"{name}: the step did not move it"
        raw_norms = raw.flatten(1).norm(dim=1)
        # The constraint binds: without it the forward would use these oversized rows.
        assert raw_norms.max() > 1.5 * bound, f"{name}: {raw_norms.tolist()}"

        effective = _effective_weight(layer)
        assert effective.shape == raw.shape
        eff_norms = effective.flatten(1).norm(dim=1)
        assert (eff_norms <= bound + 1e-4).all(), f"{name}: {eff_norms.tolist()}"
        # Max-norm only rescales: rows over the limit are shrunk onto it, same direction;
        # rows within it are used as stored. Expected rows computed here, not by renorm.
        scale = torch.where(raw_norms > bound, bound / raw_norms, torch.ones_like(raw_norms))
        expected = raw * scale.view(-1, *([1] * (raw.dim() - 1)))
        torch.testing.assert_close(effective, expected, rtol=1e-4, atol=1e-5)

        # The full model's forward went through that same effective weight, not the raw one.
        inp, out = seen[name]
        if isinstance(layer, MaxNormLinear):
            recomputed = inp @ expected.T + layer.bias.detach()
            with_raw = inp @ raw.T + layer.bias.detach()
        else:
            recomputed = F.conv2d(inp, expected, groups=layer.groups)
            with_raw = F.conv2d(inp, raw, groups=layer.groups)
        torch.testing.assert_close(out, recomputed, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(out, with_raw, rtol=1e-3, atol=1e-3)
        # Applied on the fly: the forward passes left the stored (oversized) weight alone.
        assert torch.equal(layer.weight.detach(), raw)


def test_other_shapes_compute_the_flattened_size() -> None:
    model = create_model("eegnex", n_chans=33, n_times=256, n_outputs=3).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 33, 256)).shape == (1, 3)
    assert model.in_features == 8 * 8

"""The building blocks in zoo.layers, checked against their definitions and against timm/torchvision."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import SEModule as TimmSEModule
from timm.models.vision_transformer import Block as TimmBlock
from torchvision.models.segmentation.deeplabv3 import ASPP as TorchvisionASPP
from torchvision.ops import deform_conv2d

from zoo.layers import (
    ASPP,
    CbamModule,
    DeformConv2d,
    LayerNorm2d,
    SEModule,
    TransformerBlock,
    create_attn,
    create_norm,
    deform_conv2d_sampled,
    make_divisible,
    stage_strides_and_dilations,
)
from zoo.layers.norm import GroupNorm


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- norm ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, cls",
    [
        ("batchnorm", nn.BatchNorm2d),
        ("layernorm", LayerNorm2d),
        ("layer_norm", LayerNorm2d),
        ("LayerNorm", LayerNorm2d),
        ("groupnorm", nn.GroupNorm),
        ("none", nn.Identity),
        (None, nn.Identity),
        (nn.BatchNorm2d, nn.BatchNorm2d),
    ],
)
def test_norm_by_name(name, cls):
    norm = create_norm(name, 16)
    assert isinstance(norm, cls)
    x = torch.randn(2, 16, 5, 5) * 3 + 1
    y = norm(x)
    assert y.shape == x.shape
    if cls is nn.Identity:
        assert torch.equal(y, x)
    else:
        assert not torch.allclose(y, x)
        assert sum(p.numel() for p in norm.parameters()) == 32  # per-channel weight and bias


def test_layernorm2d_normalises_channels_per_sample_and_position():
    ln = create_norm("layernorm", 8)
    # every channel with its own offset and scale, so a norm over the wrong axes shows
    x = torch.randn(3, 8, 4, 5) * torch.arange(1, 9.0).view(1, 8, 1, 1) + torch.arange(8.0).view(1, 8, 1, 1)
    y = ln(x)
    torch.testing.assert_close(y.mean(1), torch.zeros(3, 4, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(1, unbiased=False), torch.ones(3, 4, 5), atol=1e-4, rtol=0)
    # per channel over space it is not normalised (that would be Instance/BatchNorm)
    assert y.mean((0, 2, 3)).abs().max() > 0.1
    # one sample's output does not depend on the rest of the batch
    torch.testing.assert_close(ln(x[:1]), y[:1])
    # the affine parameters act per channel
    with torch.no_grad():
        ln.weight.fill_(2.0)
        ln.bias.fill_(0.5)
    torch.testing.assert_close(ln(x), 2 * y + 0.5, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("channels, groups", [(64, 32), (256, 32), (16, 16), (48, 16), (24, 8)])
def test_groupnorm_groups(channels, groups):
    gn = create_norm("groupnorm", channels)
    assert gn.num_groups == groups and gn.num_channels == channels


def test_create_norm_takes_a_partial_as_timm_does():
    norm = create_norm(partial(GroupNorm, max_groups=4), 32)
    assert isinstance(norm, GroupNorm) and norm.num_groups == 4
    with pytest.raises(TypeError, match="partial"):
        create_norm(partial(max, 1), 32)  # a partial of something that is not a module class


def test_unknown_norm_lists_choices():
    with pytest.raises(ValueError) as e:
        create_norm("bathnorm", 8)
    msg = str(e.value)
    assert "bathnorm" in msg
    for choice in ("batchnorm", "layernorm", "groupnorm", "none"):
        assert choice in msg
    with pytest.raises(TypeError):
        create_norm(3, 8)


# -- attention -------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [64, 256, 40])
def test_se_matches_timm(channels):
    ref = TimmSEModule(channels).eval()
    ours = SEModule(channels).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert ours.fc1.out_channels == ref.fc1.out_channels == make_divisible(channels / 16, 8)
    x = torch.randn(2, channels, 7, 7)
    with torch.no_grad():
        expected = ref(x)
        torch.testing.assert_close(ours(x), expected, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(expected, x)  # SE did rescale something


def test_create_attn():
    assert create_attn(None, 16) is None
    assert create_attn("none", 16) is None
    assert isinstance(create_attn("se", 16), SEModule)
    assert isinstance(create_attn("CBAM", 16), CbamModule)
    with pytest.raises(ValueError) as e:
        create_attn("sse", 16)
    assert "cbam" in str(e.value) and "se" in str(e.value)


def test_cbam_shape_and_both_gates():
    channels = 32
    cbam = CbamModule(channels).eval()
    x = torch.randn(2, channels, 6, 7).abs() + 0.1  # positive, so ratios out / x are the gates
    with torch.no_grad():
        out = cbam(x)
        assert out.shape == x.shape
        gate = out / x
        # channel gate varies over channels, spatial gate over positions: neither alone explains it
        assert gate.std(1).mean() > 1e-3  # differs across channels at a position
        assert gate.std((2, 3)).mean() > 1e-3  # differs across positions within a channel
        assert ((0 < gate) & (gate < 1)).all()  # product of two sigmoids

        # spatial gate off (conv zeroed -> sigmoid(0) = 0.5 everywhere): a pure per-channel gate remains
        spatial_w = cbam.spatial.conv.weight.clone()
        cbam.spatial.conv.weight.zero_()
        g = cbam(x) / x
        torch.testing.assert_close(g, g[:, :, :1, :1].expand_as(g))
        assert g.max() <= 0.5 + 1e-6 and g.std(1).mean() > 1e-3

        # channel gate off too (fc2 zeroed -> 0.5): both halves multiply to 0.25
        cbam.channel.fc2.weight.zero_()
        torch.testing.assert_close(cbam(x), 0.25 * x)

        # channel gate off, spatial gate on: the same gate for every channel at a position
        cbam.spatial.conv.weight.copy_(spatial_w)
        g = cbam(x) / x
        torch.testing.assert_close(g, g[:, :1].expand_as(g))
        assert g.std((2, 3)).mean() > 1e-3 and g.max() <= 0.5 + 1e-6


def test_cbam_gradients_reach_both_gates():
    cbam = CbamModule(32)
    cbam(torch.randn(2, 32, 6, 6)).square().sum().backward()
    for name, p in cbam.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# -- deformable convolution ------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["torchvision", "grid_sample"])
@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("bias", [True, False])
def test_deform_conv_starts_as_plain_conv(stride, dilation, bias, impl):
    dc = DeformConv2d(4, 6, 3, stride=stride, dilation=dilation, bias=bias, impl=impl)
    conv = nn.Conv2d(4, 6, 3, stride=stride, padding=dilation, dilation=dilation, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(dc.weight)
        if bias:
            conv.bias.copy_(dc.bias)
    x = torch.randn(2, 4, 11, 10)
    offset, mask = dc.offsets_and_mask(x)
    assert offset.shape == (2, 18, *conv(x).shape[-2:]) and mask.shape == (2, 9, *conv(x).shape[-2:])
    assert torch.equal(offset, torch.zeros_like(offset)) and torch.equal(mask, torch.ones_like(mask))
    with torch.no_grad():
        torch.testing.assert_close(dc(x), conv(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "kernel, stride, padding, dilation",
    [(3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 2, 2), (1, 1, 0, 1), (5, 2, 2, 1)],
)
def test_sampled_deform_conv_equals_torchvision(kernel, stride, padding, dilation):
    """The grid-sample implementation computes torchvision's operator: outputs and every gradient,
    with offsets large enough that many taps fall partly or wholly outside the image."""
    n, c, o, h, w = 2, 5, 7, 9, 11
    x = torch.randn(n, c, h, w, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(o, c, kernel, kernel, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(o, dtype=torch.float64, requires_grad=True)
    ho = (h + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    taps = kernel * kernel
    offset = (torch.randn(n, 2 * taps, ho, wo, dtype=torch.float64) * 3).requires_grad_()
    mask = torch.rand(n, taps, ho, wo, dtype=torch.float64).mul(2).requires_grad_()
    inputs = (x, offset, weight, bias, mask)
    kwargs = dict(stride=(stride, stride), padding=(padding, padding), dilation=(dilation, dilation))

    def run(op):
        out = op(x, offset, weight, bias, mask=mask, **kwargs)
        probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
        return out, torch.autograd.grad((out * probe).sum(), inputs)

    ref_out, ref_grads = run(deform_conv2d)
    out, grads = run(deform_conv2d_sampled)
    torch.testing.assert_close(out, ref_out)
    for name, g, ref in zip(["x", "offset", "weight", "bias", "mask"], grads, ref_grads):
        torch.testing.assert_close(g, ref, msg=lambda m, name=name: f"grad of {name}: {m}")


def test_deform_conv_impls_agree_as_layers():
    tv = DeformConv2d(4, 6, 3, impl="torchvision")
    sampled = DeformConv2d(4, 6, 3, impl="grid_sample")
    with torch.no_grad():
        tv.offset_mask.weight.normal_(0, 0.5)
        tv.offset_mask.bias.normal_(0, 0.5)
    sampled.load_state_dict(tv.state_dict())
    x = torch.randn(2, 4, 8, 9)
    torch.testing.assert_close(sampled(x), tv(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="impl must be one of"):
        DeformConv2d(4, 6, 3, impl="cuda")


def test_deform_conv_offset_predictor_learns_from_zero_init():
    dc = DeformConv2d(4, 6, 3)
    x = torch.randn(2, 4, 9, 9)
    target = torch.randn(2, 6, 9, 9)
    F.mse_loss(dc(x), target).backward()
    g = dc.offset_mask.weight.grad
    assert g is not None and dc.offset_mask.bias.grad is not None
    # offsets (first 2*9 output channels) and mask logits (last 9) both get gradient at zero init
    assert g[:18].abs().sum() > 0, "zero-initialised offsets must still receive gradient"
    assert g[18:].abs().sum() > 0
    assert dc.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("axis", ["dy", "dx"])
def test_deform_conv_offset_layout(axis):
    """Offsets are (dy, dx) per tap: a +1 offset on every tap samples the input shifted by one."""
    dc = DeformConv2d(4, 6, 3)
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        dc.offset_mask.bias[(0 if axis == "dy" else 1) : 18 : 2] = 1.0
        out = dc(x)
        shifted = torch.zeros_like(x)
        if axis == "dy":
            shifted[:, :, :-1] = x[:, :, 1:]
        else:
            shifted[..., :-1] = x[..., 1:]
        ref = F.conv2d(shifted, dc.weight, dc.bias, padding=1)
    inner = (slice(None), slice(None), slice(1, -2), slice(1, -2))  # away from the padded borders
    torch.testing.assert_close(out[inner], ref[inner], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[inner], F.conv2d(x, dc.weight, dc.bias, padding=1)[inner])


def test_deform_conv_mask_scales_output():
    dc = DeformConv2d(4, 6, 3, bias=False)
    x = torch.randn(1, 4, 7, 7)
    with torch.no_grad():
        base = dc(x)
        dc.offset_mask.bias[18:] = -100.0  # mask = 2 * sigmoid(-100) ~ 0 on every tap
        torch.testing.assert_close(dc(x), torch.zeros_like(base), atol=1e-6, rtol=0)


# -- ASPP ------------------------------------------------------------------------------------


def test_aspp_shape_and_batch_1_eval():
    aspp = ASPP(32, rates=(1, 2, 3), out_channels=16)
    x = torch.randn(2, 32, 9, 11)
    assert aspp(x).shape == (2, 16, 9, 11)
    aspp.eval()
    with torch.no_grad():
        one = aspp(x[:1])
        assert one.shape == (1, 16, 9, 11)
        torch.testing.assert_close(one, aspp(x)[:1], atol=1e-5, rtol=1e-5)
    assert len(aspp.convs) == 5  # 1x1, three dilated 3x3, image pooling


@pytest.mark.parametrize("norm", ["groupnorm", "layernorm"])
def test_aspp_trains_at_batch_1_without_batchnorm(norm):
    # 64 channels: GroupNorm's 32 groups keep 2 values each on the pooled 1x1 map
    aspp = ASPP(32, rates=(2,), out_channels=64, norm=norm).train()
    out = aspp(torch.randn(1, 32, 5, 5))
    assert out.shape == (1, 64, 5, 5)
    with pytest.raises(ValueError):  # the documented BatchNorm limitation
        ASPP(32, rates=(2,), out_channels=64).train()(torch.randn(1, 32, 5, 5))


def test_aspp_matches_torchvision():
    ref = TorchvisionASPP(32, [1, 2, 3], 16).eval()
    ours = ASPP(32, rates=(1, 2, 3), out_channels=16).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 32, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


# -- transformer block -----------------------------------------------------------------------


def test_transformer_block_shape_and_timm_names():
    ref = TimmBlock(32, 4, qkv_bias=True).eval()
    block = TransformerBlock(32, 4).eval()
    block.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        out = block(x)
        assert out.shape == x.shape
        torch.testing.assert_close(out, ref(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        TransformerBlock(30, 4)


def test_drop_path_only_in_training():
    block = TransformerBlock(32, 4, drop_path=1.0)
    plain = TransformerBlock(32, 4)
    plain.load_state_dict(block.state_dict(), strict=True)
    x = torch.randn(4, 5, 32)
    with torch.no_grad():
        block.train()
        # every residual branch dropped: the block is the identity while training
        torch.testing.assert_close(block(x), x)
        block.eval()
        plain.eval()
        out = block(x)
        torch.testing.assert_close(out, plain(x))
        assert not torch.allclose(out, x)
        torch.testing.assert_close(block(x), out)  # and deterministic


def test_drop_path_partial_is_stochastic_per_sample():
    block = TransformerBlock(16, 2, drop_path=0.5).train()
    x = torch.randn(64, 3, 16)
    with torch.no_grad():
        a, b = block(x), block(x)
    assert not torch.allclose(a, b)
    dropped_both = (a == x).flatten(1).all(1)  # samples whose two branches were both dropped
    assert 0 < dropped_both.sum() < 64


# -- dilation plan ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output_stride, plan",
    [
        (32, [(1, 1, 1), (2, 1, 1), (2, 1, 1), (2, 1, 1)]),
        (16, [(1, 1, 1), (2, 1, 1), (2, 1, 1), (1, 1, 2)]),
        (8, [(1, 1, 1), (2, 1, 1), (1, 1, 2), (1, 2, 4)]),
        (4, [(1, 1, 1), (1, 1, 2), (1, 2, 4), (1, 4, 8)]),
    ],
)
def test_stage_strides_and_dilations_imagenet_resnet(output_stride, plan):
    assert stage_strides_and_dilations([1, 2, 2, 2], output_stride, stem_stride=4) == plan


def test_stage_strides_and_dilations_small_resnet():
    assert stage_strides_and_dilations([1, 2, 2], 32) == [(1, 1, 1), (2, 1, 1), (2, 1, 1)]
    assert stage_strides_and_dilations([1, 2, 2], 4) == [(1, 1, 1), (2, 1, 1), (2, 1, 1)]
    assert stage_strides_and_dilations([1, 2, 2], 2) == [(1, 1, 1), (2, 1, 1), (1, 1, 2)]
    assert stage_strides_and_dilations([1, 2, 2], 1) == [(1, 1, 1), (1, 1, 2), (1, 2, 4)]


@pytest.mark.parametrize("output_stride, stem_stride", [(12, 4), (0, 1), (64, 4), (2, 4)])
def test_stage_strides_and_dilations_invalid(output_stride, stem_stride):
    with pytest.raises(ValueError, match="output_stride"):
        stage_strides_and_dilations([1, 2, 2, 2], output_stride, stem_stride)


def test_deform_conv_runs_in_float32_under_bf16_autocast():
    # deform_conv2d has no bf16 CPU kernel; the layer must not crash inside a bf16 model.
    from zoo.layers import DeformConv2d

    layer = DeformConv2d(4, 8)
    x = torch.randn(1, 4, 9, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x.bfloat16())
    assert out.dtype == torch.float32 and out.shape == (1, 8, 9, 9)
    torch.testing.assert_close(out, layer(x), atol=0.05, rtol=0.05)  # bf16 input rounding only

"""Every registered classification model, one parametrised module (as timm's tests/test_models.py).

Each model is built once per module-scoped fixture (pytest groups the tests by model, so
only one model is alive at a time) and copied for each test; inputs are capped at 64 px.
The second half checks the ResNets against published parameter counts and timm.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass

import pytest
import timm
import torch
import torch.nn as nn

import zoo
from zoo import UnknownArgumentError, create_model, model_info
from zoo._registry import get_entry
from zoo.layers.transformer import Attention

from .conftest import num_params, randomize_batchnorm

MAX_SIZE = 64  # cap on the test image side; 224-px models that accept any size run at 64
BATCH = 2
CLASSIFIERS = zoo.list_models(task="classification")


@dataclass
class Built:
    name: str
    model: nn.Module
    kwargs: dict  # extra build arguments (img_size=) every other build of this model must reuse
    input_size: tuple[int, int, int]  # (C, H, W) the tests feed it


def build(name: str, **kwargs) -> Built:
    """Build ``name`` for a small input: at most MAX_SIZE px, smaller ``img_size=`` when fixed."""
    torch.manual_seed(0)
    c, h, w = get_entry(name).input_size
    side = min(h, w, MAX_SIZE)
    extra: dict = {}
    if side != h or side != w:
        try:  # a fixed-size model (ViT) is rebuilt for the small size where it accepts img_size=
            model = create_model(name, img_size=side, **kwargs)
            extra = {"img_size": side}
        except UnknownArgumentError:
            model = create_model(name, **kwargs)
    else:
        model = create_model(name, **kwargs)
    fixed = getattr(model, "fixed_input_size", None)
    size = tuple(fixed) if fixed is not None else (side, side)
    return Built(name, model, extra, (model.in_chans, *size))


def rand_input(built: Built, batch: int = BATCH, in_chans: int | None = None) -> torch.Tensor:
    torch.manual_seed(1)
    c, h, w = built.input_size
    return torch.randn(batch, c if in_chans is None else in_chans, h, w)


@pytest.fixture(scope="module", params=CLASSIFIERS)
def built(request) -> Built:
    return build(request.param)


@pytest.fixture
def fresh(built: Built) -> Built:
    """A private copy of the module-scoped model, free to train and mutate."""
    return Built(built.name, copy.deepcopy(built.model), built.kwargs, built.input_size)


# -- the parametrised checks, one model at a time -------------------------------------------


def test_forward_backward(fresh: Built):
    model = fresh.model.train()
    out = model(rand_input(fresh))
    assert out.shape == (BATCH, model.num_classes)
    assert torch.isfinite(out).all(), f"{fresh.name} gives NaN/inf"
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{fresh.name}: parameters without gradient: {missing[:10]}"
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_eval_forward_deterministic(fresh: Built):
    model = fresh.model.eval()
    x = rand_input(fresh)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b)
    # eval output of one sample does not depend on the rest of the batch
    with torch.no_grad():
        torch.testing.assert_close(model(x[:1]), a[:1], atol=1e-4, rtol=1e-4)


def test_features_only(built: Built):
    torch.manual_seed(0)
    model = create_model(built.name, features_only=True, **built.kwargs).eval()
    info = model.feature_info
    assert len(info) >= 1
    c, h, w = built.input_size
    with torch.no_grad():
        feats = model(rand_input(built))
    assert isinstance(feats, (list, tuple)) and len(feats) == len(info)
    for i, (f, fi) in enumerate(zip(feats, info)):
        expected = (BATCH, fi["num_chs"], math.ceil(h / fi["reduction"]), math.ceil(w / fi["reduction"]))
        assert tuple(f.shape) == expected, f"{built.name} stage {i}: {tuple(f.shape)} != {expected}"
        assert torch.isfinite(f).all()
    reductions = [fi["reduction"] for fi in info]
    assert reductions == sorted(reductions), "feature_info must run finest first"
    # the classifier is gone, its parameters too
    assert num_params(model) < num_params(built.model)


def test_reset_classifier(fresh: Built):
    model = fresh.model.eval()
    model.reset_classifier(5)
    assert model.num_classes == 5
    with torch.no_grad():
        out = model(rand_input(fresh))
    assert out.shape == (BATCH, 5)
    assert torch.isfinite(out).all()


def test_in_chans_1(built: Built):
    torch.manual_seed(0)
    model = create_model(built.name, in_chans=1, **built.kwargs).eval()
    assert model.in_chans == 1
    with torch.no_grad():
        out = model(rand_input(built, in_chans=1))
    assert out.shape == (BATCH, model.num_classes)
    assert torch.isfinite(out).all()
    # and the one-channel model refuses three channels with a message naming the shape it got
    x3 = rand_input(built, in_chans=3)
    with pytest.raises(ValueError, match=re.escape(str(tuple(x3.shape)))):
        model(x3)


def module_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-adds counted another way than model_info's: from the shapes each conv and
    linear layer sees (forward hooks), and for self-attention the two token-by-token matmuls
    (QK^T and AV: 2 N^2 D for N tokens of width D)."""
    total = 0

    def count(m, inputs, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features
        elif isinstance(m, Attention):
            batch, tokens, width = inputs[0].shape
            total += batch * 2 * tokens * tokens * width

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_size))
    for h in hooks:
        h.remove()
    return total


def test_model_info_agrees_with_a_count_from_layer_shapes(built: Built):
    info = model_info(built.model, input_size=built.input_size)
    assert info["macs"] == module_macs(built.model, built.input_size) > 0


# -- ResNet: published numbers, timm equivalence, input checks, output stride ---------------


@pytest.mark.parametrize(
    "name, num_classes, params",
    [
        ("resnet20", 10, 272_474),
        ("resnet56", 10, 855_770),
        ("wide_resnet14_2", 10, 696_618),
        ("resnet110", 10, 1_730_714),
        ("resnet18", 1000, 11_689_512),
        ("resnet50", 1000, 25_557_032),
        ("se_resnet50", 1000, 28_088_024),
    ],
)
def test_param_count(name, num_classes, params):
    model = create_model(name)
    assert model.num_classes == num_classes and model.in_chans == 3
    assert num_params(model) == params


@pytest.mark.parametrize(
    "name, timm_name, kwargs",
    [
        ("resnet18", "resnet18", {}),
        ("resnet34", "resnet34", {}),
        ("resnet50", "resnet50", {}),
        ("se_resnet50", "seresnet50", {}),
        ("resnet50", "resnet50", {"output_stride": 8}),
    ],
)
def test_timm_equivalence(name, timm_name, kwargs):
    torch.manual_seed(0)
    ref = timm.create_model(timm_name, pretrained=False, **kwargs).eval()
    randomize_batchnorm(ref)
    model = create_model(name, **kwargs).eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        expected, out = ref(x), model(x)
    assert expected.std() > 1e-3  # the comparison is not between two near-constant outputs
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_bad_input_rank():
    model = create_model("resnet20").eval()
    with pytest.raises(ValueError) as e:
        model(torch.randn(3, 32, 32))
    assert "(N, 3, H, W)" in str(e.value) and "(3, 32, 32)" in str(e.value)
    with pytest.raises(ValueError, match=r"\(1, 2, 3, 32, 32\)"):
        model(torch.randn(1, 2, 3, 32, 32))


def test_bad_input_channels():
    model = create_model("resnet20").eval()
    with pytest.raises(ValueError) as e:
        model(torch.randn(2, 1, 32, 32))
    msg = str(e.value)
    assert "3 input channels" in msg and "(2, 1, 32, 32)" in msg


def test_bad_input_type():
    with pytest.raises(TypeError, match="ndarray"):
        create_model("resnet20")(torch.randn(1, 3, 32, 32).numpy())


@pytest.mark.parametrize(
    "output_stride, reductions, dilations",
    [
        (32, [4, 8, 16, 32], [(1, 1), (1, 1), (1, 1), (1, 1)]),
        (16, [4, 8, 16, 16], [(1, 1), (1, 1), (1, 1), (1, 2)]),
        (8, [4, 8, 8, 8], [(1, 1), (1, 1), (1, 2), (2, 4)]),
    ],
)
def test_resnet50_output_stride(output_stride, reductions, dilations):
    model = create_model("resnet50", output_stride=output_stride, features_only=True).eval()
    assert [fi["reduction"] for fi in model.feature_info] == reductions
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[-2:]) for f in feats] == [(64 // r, 64 // r) for r in reductions]
    assert feats[-1].shape[-2:] == (64 // output_stride, 64 // output_stride)
    assert [f.shape[1] for f in feats] == [256, 512, 1024, 2048]
    # first block of each stage keeps the previous dilation, later blocks the new one
    for stage, (first, rest) in zip(model.stages(), dilations):
        assert stage[0].conv2.dilation == (first, first)
        assert stage[-1].conv2.dilation == (rest, rest)
        assert stage[-1].conv2.padding == (rest, rest)


def test_small_resnet_output_stride_2_dilates_last_stage():
    plain = create_model("resnet20").eval()
    model = create_model("resnet20", output_stride=2).eval()
    assert [fi["reduction"] for fi in plain.feature_info] == [1, 2, 4]
    assert [fi["reduction"] for fi in model.feature_info] == [1, 2, 2]
    stage3 = model.layer3
    assert stage3[0].conv1.stride == (1, 1) and stage3[0].downsample[0].stride == (1, 1)
    assert stage3[0].conv1.dilation == (1, 1) and stage3[0].conv2.dilation == (2, 2)
    assert all(b.conv1.dilation == (2, 2) for b in stage3[1:])
    assert plain.layer3[0].conv1.stride == (2, 2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, 64, 16, 16)
        assert plain.forward_features(x).shape == (2, 64, 8, 8)
        assert model(x).shape == (2, 10)
    # same parameters: dilation changes the sampling, not the weights
    assert num_params(model) == 272_474


@pytest.mark.parametrize("name, output_stride", [("resnet50", 12), ("resnet20", 12), ("resnet50", 2)])
def test_invalid_output_stride(name, output_stride):
    with pytest.raises(ValueError, match="output_stride"):
        create_model(name, output_stride=output_stride)


def test_out_indices():
    model = create_model("resnet20", features_only=True, out_indices=(0, -1)).eval()
    assert [fi["reduction"] for fi in model.feature_info] == [1, 4]
    feats = model(torch.randn(1, 3, 32, 32))
    assert [tuple(f.shape) for f in feats] == [(1, 16, 32, 32), (1, 64, 8, 8)]
    for bad in [(3,), (-4,), ()]:
        with pytest.raises(ValueError, match="out_indices"):
            create_model("resnet20", features_only=True, out_indices=bad)
    with pytest.raises(ValueError, match="features_only"):
        create_model("resnet20", out_indices=(0,))


@pytest.mark.parametrize("norm", ["layernorm", "groupnorm", "none"])
@pytest.mark.parametrize("attn", [None, "se", "cbam"])
def test_resnet_norm_and_attn_options(norm, attn):
    torch.manual_seed(0)
    model = create_model("resnet20", norm=norm, attn=attn)
    block = model.layer2[0]
    assert (block.attn is None) == (attn is None)
    assert (
        type(block.bn1).__name__
        == {"layernorm": "LayerNorm2d", "groupnorm": "GroupNorm", "none": "NoNorm"}[norm]
    )
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_resnet_deform_stages_keep_every_plain_tensor_and_add_zero_offset_predictors():
    torch.manual_seed(0)
    plain = create_model("resnet18").eval()
    randomize_batchnorm(plain)
    dcn = create_model("resnet18", deform_stages=(4,)).eval()
    ours, theirs = dcn.state_dict(), plain.state_dict()
    extra = sorted(set(ours) - set(theirs))
    assert set(theirs) <= set(ours) and all(
        re.fullmatch(r"layer4\.\d\.conv[12]\.offset_mask\.(weight|bias)", k) for k in extra
    )
    assert len(extra) == 8 and all(ours[k].abs().sum() == 0 for k in extra)
    assert all(ours[k].shape == v.shape for k, v in theirs.items())
    dcn.load_state_dict({**ours, **theirs})  # the plain weights fill the DCN convs: same network
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(dcn(x), plain(x), rtol=1e-4, atol=1e-4)
    dilated = create_model("resnet18", deform_stages=(3, 4), output_stride=8)
    assert dilated.layer4[1].conv2.dilation == (4, 4) and dilated.layer3[0].conv1.stride == (1, 1)
    assert dilated(x).shape == (2, 1000)
    bottleneck = create_model("resnet50", deform_stages=(4,))
    assert type(bottleneck.layer4[0].conv2).__name__ == "DeformConv2d"
    assert type(bottleneck.layer4[0].conv1).__name__ == "Conv2d"  # only the 3x3 convs


@pytest.mark.parametrize("stages", [(0,), (5,), (True,), ("4",)])
def test_resnet_deform_stages_out_of_range(stages):
    with pytest.raises(ValueError, match="deform_stages names stages 1..4"):
        create_model("resnet18", deform_stages=stages)


def test_plain_net_has_no_shortcuts():
    model = create_model("plain20")
    assert all(b.downsample is None and not b.shortcut for s in model.stages() for b in s)
    # no zero-init of the last norm: a plain net has no identity to fall back on
    assert all(b.bn2.weight.abs().sum() > 0 for s in model.stages() for b in s)
    resnet = create_model("resnet20")
    assert all(b.bn2.weight.abs().sum() == 0 for s in resnet.stages() for b in s)


@pytest.mark.parametrize("name", ["resnet20", "densenet_bc40", "vit_tiny_patch4_32"])
def test_get_classifier_is_the_logits_layer(name):
    model = zoo.create_model(name)
    head = model.get_classifier()
    assert isinstance(head, nn.Linear) and head.out_features == 10
    assert head is model.get_submodule(model.classifier_name)


@pytest.mark.parametrize("name", ["se_resnet20", "cbam_resnet20", "se_resnet50"])
def test_attention_slot_is_attn_and_loads_se_state_dicts(name):
    """The slot is ``attn`` whichever attention it holds; state dicts that call it ``se`` (timm's
    seresnet50, zoo's before the rename) load into it strictly and give the same outputs."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    randomize_batchnorm(model)
    state = model.state_dict()
    assert any(".attn." in k for k in state) and not any(".se." in k for k in state)
    legacy = {k.replace(".attn.", ".se."): v for k, v in state.items()}
    torch.manual_seed(1)
    other = create_model(name).eval()
    other.load_state_dict(legacy, strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(other(x), model(x), atol=0, rtol=0)
    with pytest.raises(RuntimeError, match="Unexpected key"):  # still strict: a stray key fails
        other.load_state_dict({**legacy, "layer1.0.se.extra": torch.zeros(1)}, strict=True)


def test_vit_macs_count_the_attention_matmuls():
    """vit_tiny_patch7_28 counted by hand: 16 patches + a class token (N=17), width D=192, 9 blocks.
    Per block: qkv 3D^2 N, projection D^2 N, MLP 8D^2 N, and the two attention matmuls (QK^T and
    AV) 2 N^2 D, which torch's flop counter misses on the CPU unless told."""
    n, d = 17, 192
    block = 3 * d * d * n + d * d * n + 8 * d * d * n + 2 * n * n * d
    patch_embed, head = 16 * 7 * 7 * d, d * 10
    info = zoo.model_info("vit_tiny_patch7_28", input_size=(1, 28, 28))
    assert info["macs"] == 9 * block + patch_embed + head

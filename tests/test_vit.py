"""Vision Transformer: sizes, timm equivalence, small-image variants, features and input checks."""

from __future__ import annotations

import pytest
import timm
import torch

import zoo
from zoo import UnknownArgumentError
from zoo._registry import get_entry

from .conftest import num_params

SMALL = ["vit_tiny_patch4_32", "vit_small_patch4_32"]


@pytest.mark.parametrize(
    "name, expected", [("vit_tiny_patch16_224", 5_717_416), ("vit_small_patch16_224", 22_050_664)]
)
def test_param_counts_and_timm_equivalence(name, expected):
    torch.manual_seed(0)
    model = zoo.create_model(name)
    assert num_params(model) == expected
    ref = timm.create_model(name).eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    model.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out, ref_out = model(x), ref(x)
    assert out.shape == (1, 1000)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5)


def test_timm_equivalence_avg_pool_and_intermediates():
    torch.manual_seed(0)
    ref = timm.create_model("vit_tiny_patch16_224", global_pool="avg").eval()
    model = zoo.create_model("vit_tiny_patch16_224", global_pool="avg").eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=0, atol=1e-5)
        feats = model.forward_intermediates(x)
        ref_feats = ref.forward_intermediates(x, indices=[2, 5, 8, 11], intermediates_only=True)
    assert [f.shape for f in feats] == [(1, 192, 14, 14)] * 4
    for f, r in zip(feats, ref_feats):
        torch.testing.assert_close(f, r, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", SMALL)
def test_small_variants_forward_backward(name):
    assert get_entry(name).input_size == (3, 32, 32)
    model = zoo.create_model(name, drop_rate=0.1, attn_drop_rate=0.1, drop_path_rate=0.1)
    assert model.num_classes == 10 and model.fixed_input_size == (32, 32)
    out = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"


def test_fashion_mnist_size():
    model = zoo.create_model("vit_tiny_patch4_32", img_size=28, in_chans=1, global_pool="avg")
    assert model.pos_embed.shape == (1, 7 * 7 + 1, 192)
    out = model(torch.randn(1, 1, 28, 28))
    assert out.shape == (1, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name, size", [(SMALL[0], 32), (SMALL[1], 32), (SMALL[0], 28)])
def test_features_only(name, size):
    model = zoo.create_model(name, img_size=size, features_only=True).eval()
    assert [f["module"] for f in model.feature_info] == ["blocks.2", "blocks.4", "blocks.6", "blocks.8"]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, size, size))
    assert len(feats) == len(model.feature_info)
    for f, info in zip(feats, model.feature_info):
        assert info["reduction"] == 4
        assert f.shape == (1, info["num_chs"], size // info["reduction"], size // info["reduction"])
    assert not any(n.startswith("head.") for n, _ in model.named_parameters())


def test_features_only_out_indices():
    model = zoo.create_model("vit_tiny_patch4_32", features_only=True, out_indices=(1, -1))
    assert [f["module"] for f in model.feature_info] == ["blocks.4", "blocks.8"]
    feats = model(torch.randn(1, 3, 32, 32))
    assert [f.shape for f in feats] == [(1, 192, 8, 8)] * 2


def test_bad_input_errors():
    model = zoo.create_model("vit_tiny_patch4_32").eval()
    with pytest.raises(ValueError, match=r"built for 32x32 images, got 64x64.*img_size="):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"expects a 4-D tensor"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match=r"expects 3 input channels, got 1"):
        model(torch.randn(1, 1, 32, 32))


def test_bad_arguments():
    with pytest.raises(UnknownArgumentError, match="drop_path_rate"):
        zoo.create_model("vit_tiny_patch4_32", drop_path=0.1)
    with pytest.raises(UnknownArgumentError, match="fixes depth"):
        zoo.create_model("vit_tiny_patch4_32", depth=6)
    with pytest.raises(ValueError, match="divisible by patch_size"):
        zoo.create_model("vit_tiny_patch4_32", img_size=30)
    with pytest.raises(ValueError, match="global_pool"):
        zoo.create_model("vit_tiny_patch4_32", global_pool="max")

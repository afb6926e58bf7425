"""DenseNet: parameter counts, timm equivalence, feature maps, and the pluggable norm/attention."""

from __future__ import annotations

import pytest
import timm
import torch

from zoo import UnknownArgumentError, create_model

from .conftest import num_params, randomize_batchnorm


@pytest.mark.parametrize(
    "name, expected",
    [("densenet_bc40", 176_122), ("densenet_bc100", 769_162), ("densenet121", 7_978_856)],
)
def test_param_count(name, expected):
    assert num_params(create_model(name)) == expected


def test_densenet121_matches_timm():
    torch.manual_seed(0)
    ref = timm.create_model("densenet121", pretrained=False)
    randomize_batchnorm(ref)  # so eval-mode norms are exercised, not just the identity
    model = create_model("densenet121")
    model.load_state_dict(ref.state_dict(), strict=True)
    ref.eval()
    model.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        out, expected = model(x), ref(x)
    assert out.shape == (2, 1000)
    assert (out - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize(
    "name, kwargs, size",
    [
        ("densenet_bc40", {}, 32),
        ("densenet_bc40", {"output_stride": 2}, 32),
        ("densenet_bc40", {"output_stride": 1}, 32),
        ("densenet121", {"output_stride": 8}, 64),
    ],
)
def test_features_only_shapes_match_feature_info(name, kwargs, size):
    model = create_model(name, features_only=True, **kwargs).eval()
    with torch.no_grad():
        features = model(torch.randn(1, 3, size, size))
    assert len(features) == len(model.feature_info)
    for f, info in zip(features, model.feature_info):
        assert f.shape[1:] == (info["num_chs"], size // info["reduction"], size // info["reduction"])


def test_small_output_stride_at_natural_stride_changes_nothing():
    base = create_model("densenet_bc40")
    for os in (4, 8, 16, 32):
        model = create_model("densenet_bc40", output_stride=os)
        assert [f["reduction"] for f in model.feature_info] == [1, 2, 4]
        assert model.state_dict().keys() == base.state_dict().keys()
    dilated = create_model("densenet_bc40", output_stride=2)
    assert [f["reduction"] for f in dilated.feature_info] == [1, 2, 2]
    assert dilated.features.denseblock3.denselayer1.conv2.dilation == (2, 2)
    assert dilated.features.denseblock2.denselayer1.conv2.dilation == (1, 1)


@pytest.mark.parametrize("kwargs", [{"norm": "layernorm"}, {"attn": "se"}, {"attn": "cbam"}])
def test_norm_and_attention_forward_backward(kwargs):
    torch.manual_seed(0)
    model = create_model("densenet_bc40", **kwargs)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    if "attn" in kwargs:
        assert model.features.denseblock1.attn is not None
        assert any(k.startswith("features.denseblock3.attn.") for k in model.state_dict())


def test_attn_none_adds_no_keys_and_head_is_replaceable():
    model = create_model("densenet_bc40", num_classes=7, in_chans=1)
    assert not any(".attn." in k for k in model.state_dict())
    assert model.get_classifier().out_features == 7
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 7)
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3 and "classifier.weight" in model.state_dict()


def test_misspelt_argument_is_an_error():
    with pytest.raises(UnknownArgumentError, match="output_stride"):
        create_model("densenet_bc40", output_strid=8)
    with pytest.raises(UnknownArgumentError, match="growth_rate"):
        create_model("densenet121", growth_rate=12)

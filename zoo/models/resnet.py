"""ResNet (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016).

Two stems, one model class:
- ``stem="cifar"``: the paper's small-image network (Sec. 4.2): a 3x3 conv, then 3 stages
  of 16/32/64 channels with 2n basic blocks each (depth 6n+2), stride 4 overall. Shortcuts
  that change shape use a 1x1 projection (conv + norm). ``shortcut=False`` removes every
  shortcut: the paper's "plain" baseline for the residual ablation.
- ``stem="imagenet"``: the 7x7/stride-2 conv and max pool, then 4 stages of 64..512 (x4 for
  bottlenecks) channels. Parameter names follow timm, so timm's ``resnet18/34/50`` and
  ``seresnet50`` state dicts load unchanged (timm calls the attention slot ``se``; here it is
  ``attn``, whichever attention it holds, and ``se.*`` tensors load into it).

Every variant takes ``norm=`` (batchnorm, layernorm, groupnorm, none), ``attn=`` (se, cbam,
None) and ``output_stride=`` (dilation instead of stride in the late stages).

``deform_stages=`` makes the 3x3 convs of the stages named (1-based: ``(4,)`` is ``layer4``,
the paper's conv5; ``(2, 3, 4)`` is conv3-conv5) DCNv2 convs (``zoo.layers.DeformConv2d``,
Zhu et al. 2019, who placed them there). Each keeps the plain conv's ``weight`` (same name
and shape, so classification weights still fill it) and adds its own offset-and-mask
predictor, initialised to zero: the network starts as the plain one.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
from timm.layers import DropPath

from .._registry import register_model
from ..layers import DeformConv2d, create_attn, create_norm, stage_strides_and_dilations
from ._base import ZooModel, check_drop_path_rate, classifier_or_identity


def conv3x3(in_chs: int, out_chs: int, stride: int = 1, dilation: int = 1, deform: bool = False) -> nn.Module:
    """A 3x3 conv without bias; ``deform``: the DCNv2 conv with the same weight (name and shape)."""
    if deform:
        return DeformConv2d(
            in_chs, out_chs, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
    return nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class _Block(nn.Module):
    """What both blocks share: the attention slot ``attn``, which loads timm's ``se`` too."""

    def __init__(self):
        super().__init__()
        self.register_load_state_dict_pre_hook(_rename_se_to_attn)


def _rename_se_to_attn(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """State dicts written by timm (``seresnet50``) and by zoo before the slot was renamed call
    it ``se``; their tensors load into ``attn`` unchanged, so old files keep loading strictly."""
    for key in [k for k in state_dict if k.startswith(f"{prefix}se.")]:
        state_dict[f"{prefix}attn.{key[len(prefix) + 3 :]}"] = state_dict.pop(key)


class BasicBlock(_Block):
    """Two 3x3 convs; attention (if any) on the residual branch before the addition."""

    expansion = 1

    def __init__(
        self,
        in_chs,
        planes,
        stride=1,
        first_dilation=1,
        dilation=1,
        norm="batchnorm",
        attn=None,
        shortcut=True,
        drop_path=0.0,
        deform=False,
    ):
        super().__init__()
        out_chs = planes * self.expansion
        self.conv1 = conv3x3(in_chs, planes, stride, first_dilation, deform)
        self.bn1 = create_norm(norm, planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, out_chs, 1, dilation, deform)
        self.bn2 = create_norm(norm, out_chs)
        self.attn = create_attn(attn, out_chs)
        self.act2 = nn.ReLU(inplace=True)
        self.shortcut = shortcut
        self.downsample = projection(in_chs, out_chs, stride, norm) if shortcut else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def zero_init_last(self) -> None:
        if getattr(self.bn2, "weight", None) is not None:
            nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.attn is not None:
            out = self.attn(out)
        if self.shortcut:
            out = self.drop_path(out) + (x if self.downsample is None else self.downsample(x))
        return self.act2(out)


class Bottleneck(_Block):
    """1x1 reduce, 3x3 (carries the stride, "ResNet v1.5"), 1x1 expand by 4."""

    expansion = 4

    def __init__(
        self,
        in_chs,
        planes,
        stride=1,
        first_dilation=1,
        dilation=1,
        norm="batchnorm",
        attn=None,
        shortcut=True,
        drop_path=0.0,
        deform=False,
    ):
        super().__init__()
        out_chs = planes * self.expansion
        self.conv1 = nn.Conv2d(in_chs, planes, 1, bias=False)
        self.bn1 = create_norm(norm, planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, stride, first_dilation, deform)
        self.bn2 = create_norm(norm, planes)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(planes, out_chs, 1, bias=False)
        self.bn3 = create_norm(norm, out_chs)
        self.attn = create_attn(attn, out_chs)
        self.act3 = nn.ReLU(inplace=True)
        self.shortcut = shortcut
        self.downsample = projection(in_chs, out_chs, stride, norm) if shortcut else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def zero_init_last(self) -> None:
        if getattr(self.bn3, "weight", None) is not None:
            nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.attn is not None:
            out = self.attn(out)
        if self.shortcut:
            out = self.drop_path(out) + (x if self.downsample is None else self.downsample(x))
        return self.act3(out)


def projection(in_chs: int, out_chs: int, stride: int, norm) -> nn.Module | None:
    """The 1x1 conv + norm shortcut, only where the shape changes (else the identity is used)."""
    if stride == 1 and in_chs == out_chs:
        return None
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False), create_norm(norm, out_chs))


class ResNet(ZooModel):
    first_conv_name = "conv1"
    classifier_name = "fc"

    def __init__(
        self,
        block: type[nn.Module],
        layers: tuple[int, ...],
        channels: tuple[int, ...] = (64, 128, 256, 512),
        stem: str = "imagenet",
        num_classes: int = 1000,
        in_chans: int = 3,
        norm: str = "batchnorm",
        attn: str | None = None,
        output_stride: int = 32,
        shortcut: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        deform_stages: tuple[int, ...] = (),
    ):
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if len(layers) != len(channels):
            raise ValueError(f"layers {layers} and channels {channels} must have the same length")
        deform_stages = tuple(deform_stages)
        if any(isinstance(i, bool) or i not in range(1, len(layers) + 1) for i in deform_stages):
            raise ValueError(
                f"deform_stages names stages 1..{len(layers)} (layer1..layer{len(layers)}), got {deform_stages}"
            )
        check_drop_path_rate(drop_path_rate)
        self.num_classes, self.in_chans, self.drop_rate = num_classes, in_chans, drop_rate
        stem_chs = channels[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, stem_chs, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            stem_stride = 4
        else:
            self.conv1 = conv3x3(in_chans, stem_chs)
            self.maxpool = nn.Identity()
            stem_stride = 1
        self.bn1 = create_norm(norm, stem_chs)
        self.act1 = nn.ReLU(inplace=True)

        stage_strides = [1] + [2] * (len(layers) - 1)
        plan = stage_strides_and_dilations(stage_strides, output_stride, stem_stride)
        drop_paths = torch.linspace(0, drop_path_rate, sum(layers)).tolist()
        in_chs, reduction, block_idx, self.feature_info = stem_chs, stem_stride, 0, []
        for i, (n, planes, (stride, first_dilation, dilation)) in enumerate(zip(layers, channels, plan)):
            blocks = []
            for j in range(n):
                blocks.append(
                    block(
                        in_chs,
                        planes,
                        stride if j == 0 else 1,
                        first_dilation if j == 0 else dilation,
                        dilation,
                        norm=norm,
                        attn=attn,
                        shortcut=shortcut,
                        drop_path=drop_paths[block_idx],
                        deform=i + 1 in deform_stages,
                    )
                )
                in_chs, block_idx = planes * block.expansion, block_idx + 1
            reduction *= stride
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=f"layer{i + 1}"))
        self.num_stages = len(layers)
        self.num_features = in_chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = classifier_or_identity(in_chs, num_classes)
        self._init_weights(zero_init_last=shortcut)

    def _init_weights(self, zero_init_last: bool) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, DeformConv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # The loop above re-drew the DCN convs' offset predictors (plain Conv2d): back to zero,
        # so each DCN conv starts exactly as the plain conv it replaces.
        for m in self.modules():
            if isinstance(m, DeformConv2d):
                nn.init.zeros_(m.offset_mask.weight)
                nn.init.zeros_(m.offset_mask.bias)
        # Residual branches start at zero so each block starts as the identity (Goyal et al. 2017).
        # Plain nets have no identity to fall back on, so they keep the ordinary init.
        if zero_init_last:
            for m in self.modules():
                if hasattr(m, "zero_init_last"):
                    m.zero_init_last()

    def stages(self) -> list[nn.Module]:
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.act1(self.bn1(self.conv1(x))))

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.forward_stem(x)
        features = []
        for stage in self.stages():
            x = stage(x)
            features.append(x)
        return features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stem(x)
        for stage in self.stages():
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        if self.drop_rate > 0:
            x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)


def _cifar_args(depth: int, **extra) -> dict:
    if (depth - 2) % 6:
        raise ValueError(f"small-image ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    return dict(block=BasicBlock, layers=(n, n, n), channels=(16, 32, 64), stem="cifar", **extra)


# Small-image ResNets (28-32 px). 10 classes by default, as on CIFAR-10 and Fashion-MNIST.
_small = partial(register_model, ResNet, input_size=(3, 32, 32), defaults=dict(num_classes=10))


@_small()
def resnet20():
    return _cifar_args(20)


@_small()
def resnet32():
    return _cifar_args(32)


@_small()
def resnet44():
    return _cifar_args(44)


@_small()
def resnet56():
    return _cifar_args(56)


@_small()
def resnet110():
    return _cifar_args(110)


@_small()
def wide_resnet14_2():
    # A depth-14 small-image ResNet (two blocks per stage) at twice the usual width, 32/64/128
    # channels (0.70M params): a post-activation cousin of Zagoruyko & Komodakis' WRN-16-2.
    # On 2 CPU cores it trains ~1.5x faster than resnet56 (0.86M): wider convolutions use the
    # cores better than more layers of 16 channels.
    return dict(_cifar_args(14), channels=(32, 64, 128))


@_small()
def plain20():
    return _cifar_args(20, shortcut=False)


@_small()
def plain56():
    return _cifar_args(56, shortcut=False)


@_small()
def se_resnet20():
    return _cifar_args(20, attn="se")


@_small()
def se_resnet56():
    return _cifar_args(56, attn="se")


@_small()
def se_resnet110():
    return _cifar_args(110, attn="se")


@_small()
def cbam_resnet20():
    return _cifar_args(20, attn="cbam")


@_small()
def cbam_resnet56():
    return _cifar_args(56, attn="cbam")


@_small()
def cbam_resnet110():
    return _cifar_args(110, attn="cbam")


# ImageNet ResNets (224 px, 1000 classes), state-dict compatible with timm.
@register_model(ResNet)
def resnet18():
    return dict(block=BasicBlock, layers=(2, 2, 2, 2))


@register_model(ResNet)
def se_resnet18():
    return dict(block=BasicBlock, layers=(2, 2, 2, 2), attn="se")


@register_model(ResNet)
def cbam_resnet18():
    return dict(block=BasicBlock, layers=(2, 2, 2, 2), attn="cbam")


@register_model(ResNet)
def resnet34():
    return dict(block=BasicBlock, layers=(3, 4, 6, 3))


@register_model(ResNet)
def resnet50():
    return dict(block=Bottleneck, layers=(3, 4, 6, 3))


@register_model(ResNet)
def resnet101():
    return dict(block=Bottleneck, layers=(3, 4, 23, 3))


@register_model(ResNet)
def se_resnet50():
    return dict(block=Bottleneck, layers=(3, 4, 6, 3), attn="se")


@register_model(ResNet)
def cbam_resnet50():
    return dict(block=Bottleneck, layers=(3, 4, 6, 3), attn="cbam")

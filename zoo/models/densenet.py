"""DenseNet (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017).

Every variant here is DenseNet-BC: each dense layer is norm-ReLU-1x1 conv to ``bn_size * k``
channels (the bottleneck, "B"), then norm-ReLU-3x3 conv to ``k`` (the growth rate) new
channels, concatenated onto everything before it; each transition is norm-ReLU-1x1 conv that
keeps ``compression`` of the channels ("C", 0.5) followed by a 2x2 average pool. Two stems:
- ``stem="cifar"``: the paper's small-image network (Sec. 4): a 3x3 conv to ``2k`` channels,
  no norm and no pooling, then 3 dense blocks of ``(depth - 4) / 6`` layers (stride 4 overall).
- ``stem="imagenet"``: 7x7/stride-2 conv, norm, ReLU, 3x3/stride-2 max pool, then 4 dense
  blocks. Parameter names follow timm (``features.denseblock1.denselayer1.conv1``...), so
  timm's ``densenet121`` state dict loads unchanged.

Every variant takes ``norm=`` (batchnorm, layernorm, groupnorm, none), ``attn=`` (se, cbam,
None: one module on each dense block's output, before its transition; with None no module
and no parameter is added) and ``output_stride=``: a transition whose downsampling would
push the total stride past it keeps its norm and 1x1 conv but drops its pool, and every 3x3
conv after it is dilated instead (the dense layers have no strided conv of their own, so
unlike ResNet there is no ``first_dilation``).

``feature_info`` lists one map per dense block: the block's output (after its attention,
before the transition) for all but the last, and for the last the output of the final
norm + ReLU, i.e. what ``forward_features`` returns (the same taps as timm's).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._registry import register_model
from ..layers import create_attn, create_norm, stage_strides_and_dilations
from ._base import ZooModel, classifier_or_identity


class DenseLayer(nn.Module):
    """norm-ReLU-1x1 conv (bottleneck), norm-ReLU-3x3 conv to ``growth_rate`` new channels."""

    def __init__(self, in_chs, growth_rate, bn_size=4, dilation=1, norm="batchnorm", drop_rate=0.0):
        super().__init__()
        mid_chs = bn_size * growth_rate
        self.norm1 = create_norm(norm, in_chs)
        self.act1 = nn.ReLU(inplace=True)  # its input is always a fresh torch.cat, never a kept map
        self.conv1 = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.norm2 = create_norm(norm, mid_chs)
        self.act2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid_chs, growth_rate, 3, padding=dilation, dilation=dilation, bias=False)
        self.drop_rate = drop_rate

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.conv1(self.act1(self.norm1(torch.cat(features, 1))))
        x = self.conv2(self.act2(self.norm2(x)))
        if self.drop_rate > 0:
            x = F.dropout(x, self.drop_rate, self.training)
        return x


class DenseBlock(nn.Module):
    """``num_layers`` dense layers, each fed the concatenation of the input and all earlier outputs.

    The layers are children ``denselayer1``.. (timm's names); the attention slot ``attn`` is
    ``None`` when unused, so it adds no key to the state dict.
    """

    def __init__(
        self,
        num_layers,
        in_chs,
        growth_rate,
        bn_size=4,
        dilation=1,
        norm="batchnorm",
        attn=None,
        drop_rate=0.0,
    ):
        super().__init__()
        self.num_layers = num_layers
        for i in range(num_layers):
            layer = DenseLayer(in_chs + i * growth_rate, growth_rate, bn_size, dilation, norm, drop_rate)
            self.add_module(f"denselayer{i + 1}", layer)
        self.out_chs = in_chs + num_layers * growth_rate
        self.attn = create_attn(attn, self.out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for i in range(self.num_layers):
            features.append(getattr(self, f"denselayer{i + 1}")(features))
        x = torch.cat(features, 1)
        if self.attn is not None:
            x = self.attn(x)
        return x


class DenseTransition(nn.Sequential):
    """norm-ReLU-1x1 conv (compression), then a 2x2 average pool, or none when dilating instead."""

    def __init__(self, in_chs, out_chs, stride=2, norm="batchnorm"):
        super().__init__()
        self.norm = create_norm(norm, in_chs)
        self.act = nn.ReLU()  # not in place: with norm="none" its input is a feature map we return
        self.conv = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2) if stride == 2 else nn.Identity()


class DenseNet(ZooModel):
    first_conv_name = "features.conv0"
    classifier_name = "classifier"  # the head module, named as in timm

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        bn_size: int = 4,
        compression: float = 0.5,
        stem: str = "imagenet",
        num_classes: int = 1000,
        in_chans: int = 3,
        norm: str = "batchnorm",
        attn: str | None = None,
        output_stride: int = 32,
        drop_rate: float = 0.0,
        layer_drop_rate: float = 0.0,
    ):
        """
        Args:
            growth_rate: channels each dense layer adds (``k`` in the paper).
            block_config: dense layers per block.
            bn_size: the bottleneck 1x1 conv gives ``bn_size * growth_rate`` channels.
            compression: fraction of channels a transition keeps (``theta``, rounded down).
            stem: ``"imagenet"`` (7x7/2 conv, norm, ReLU, max pool) or ``"cifar"`` (one 3x3 conv).
            drop_rate: dropout before the classifier.
            layer_drop_rate: dropout after each dense layer's 3x3 conv (the paper's 0.2 on
                CIFAR without augmentation).
        """
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if not 0 < compression <= 1:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        self.num_classes, self.in_chans, self.drop_rate = num_classes, in_chans, drop_rate
        chs = 2 * growth_rate
        self.features = nn.Sequential()
        if stem == "imagenet":
            self.features.add_module("conv0", nn.Conv2d(in_chans, chs, 7, stride=2, padding=3, bias=False))
            self.features.add_module("norm0", create_norm(norm, chs))
            self.features.add_module("act0", nn.ReLU(inplace=True))
            self.features.add_module("pool0", nn.MaxPool2d(3, stride=2, padding=1))
            stem_stride = 4
        else:
            # The first dense layer starts with norm-ReLU, so the paper's CIFAR stem is the conv alone.
            self.features.add_module("conv0", nn.Conv2d(in_chans, chs, 3, padding=1, bias=False))
            stem_stride = 1

        # Block i > 1 is preceded by a transition that downsamples by 2 (unless dilating).
        stage_strides = [1] + [2] * (len(block_config) - 1)
        plan = stage_strides_and_dilations(stage_strides, output_stride, stem_stride)
        reduction, self.feature_info = stem_stride, []
        for i, (num_layers, (stride, _, dilation)) in enumerate(zip(block_config, plan)):
            if i > 0:
                out_chs = int(chs * compression)
                self.features.add_module(f"transition{i}", DenseTransition(chs, out_chs, stride, norm))
                chs = out_chs
            reduction *= stride
            block = DenseBlock(num_layers, chs, growth_rate, bn_size, dilation, norm, attn, layer_drop_rate)
            self.features.add_module(f"denseblock{i + 1}", block)
            chs = block.out_chs
            self.feature_info.append(
                dict(num_chs=chs, reduction=reduction, module=f"features.denseblock{i + 1}")
            )
        self.features.add_module("norm5", create_norm(norm, chs))
        self.features.add_module("act5", nn.ReLU())
        self.feature_info[-1]["module"] = "features.act5"
        names = [name for name, _ in self.features.named_children()]
        self._tap_indices = [names.index(f["module"].split(".", 1)[1]) for f in self.feature_info]

        self.num_features = chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = classifier_or_identity(chs, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, module in enumerate(self.features):
            x = module(x)
            if i in self._tap_indices:
                features.append(x)
        return features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        if self.drop_rate > 0:
            x = F.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.classifier(x)


def _bc_args(depth: int) -> dict:
    """DenseNet-BC for small images: 3 blocks of (depth - 4) / 6 layers, k = 12."""
    if (depth - 4) % 6:
        raise ValueError(f"small-image DenseNet-BC depth must be 6n+4, got {depth}")
    n = (depth - 4) // 6
    return dict(growth_rate=12, block_config=(n, n, n), stem="cifar")


# Small-image DenseNet-BC (28-32 px). 10 classes by default, as on CIFAR-10 and Fashion-MNIST.
_small = partial(register_model, DenseNet, input_size=(3, 32, 32), defaults=dict(num_classes=10))


@_small()
def densenet_bc40():
    return _bc_args(40)


@_small()
def densenet_bc100():
    return _bc_args(100)


# ImageNet DenseNets (224 px, 1000 classes), state-dict compatible with timm.
@register_model(DenseNet)
def densenet121():
    return dict(growth_rate=32, block_config=(6, 12, 24, 16))


# DenseNet-121's growth rate and four blocks with half its layers each (3, 6, 12, 8): 63 layers,
# 2.3M params. densenet121 trains at 0.37x resnet18's speed on a 2-core CPU (20.9 vs 56.3 img/s,
# forward + backward + SGD step, 112 px, batch 32, bf16 + channels_last, one thread, AMD Zen 5);
# this one at 0.96x (53.8), so the two compare at the same training budget (Imagenette).
@register_model(DenseNet)
def densenet63():
    return dict(growth_rate=32, block_config=(3, 6, 12, 8))

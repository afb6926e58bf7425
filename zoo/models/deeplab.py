"""DeepLabV3 (Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation",
2017), DeepLabV3+ (Chen et al., "Encoder-Decoder with Atrous Separable Convolution", ECCV
2018) and the FCN baseline (Long et al., CVPR 2015), on any registered backbone.

A backbone is any registered model built ``features_only`` with the given ``output_stride``; the
head reads its last feature map (DeepLabV3+ also its finest, stride 4 on the ResNets) and the
logits are upsampled bilinearly to the input size.
The forward returns a dict as torchvision's segmentation models do: ``{"out": logits}``,
plus ``"aux"`` when the auxiliary FCN head on the stage before last is built
(``aux_loss=True``). Module names follow torchvision (``backbone``, ``classifier``,
``aux_classifier``), so ``deeplabv3_resnet50(num_classes=21)`` loads the state dict of
``torchvision.models.segmentation.deeplabv3_resnet50`` unchanged and gives the same outputs.

``norm=`` and ``attn=`` go to the backbone; ``norm=`` also picks the heads' normalisation.
``backbone_arch`` and ``backbone_args`` on a built model say which classification weights its
backbone takes (``create_model(..., backbone_weights=...)``).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._registry import register_model
from ..layers import ASPP, create_norm
from ._base import ZooModel, create_backbone


class FCNHead(nn.Sequential):
    """3x3 conv to a quarter of the channels, norm, ReLU, dropout, 1x1 conv to the classes."""

    def __init__(self, in_chs: int, num_classes: int, dropout: float = 0.1, norm: str = "batchnorm"):
        mid_chs = in_chs // 4
        super().__init__(
            nn.Conv2d(in_chs, mid_chs, 3, padding=1, bias=False),
            create_norm(norm, mid_chs),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(mid_chs, num_classes, 1),
        )


class DeepLabHead(nn.Sequential):
    """ASPP, a 3x3 conv of 256 channels with norm and ReLU, a 1x1 conv to the classes."""

    def __init__(
        self,
        in_chs: int,
        num_classes: int,
        rates: tuple[int, ...],
        dropout: float = 0.5,
        norm: str = "batchnorm",
    ):
        super().__init__(
            ASPP(in_chs, rates, 256, dropout, norm),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            create_norm(norm, 256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, num_classes, 1),
        )


class DeepLabV3PlusHead(nn.Module):
    """DeepLabV3+'s decoder (Chen et al. 2018, Sec. 3.1): ASPP on the last map, upsampled to the
    low-level map's resolution and concatenated with that map projected by a 1x1 conv to 48
    channels (+ norm, ReLU), then two 3x3 convs of 256 channels (+ norm, ReLU) and the 1x1
    conv to the classes (``logits``)."""

    def __init__(
        self,
        in_chs: int,
        low_chs: int,
        num_classes: int,
        rates: tuple[int, ...],
        dropout: float = 0.5,
        norm: str = "batchnorm",
        low_out_chs: int = 48,
    ):
        super().__init__()
        self.aspp = ASPP(in_chs, rates, 256, dropout, norm)
        self.low_project = nn.Sequential(
            nn.Conv2d(low_chs, low_out_chs, 1, bias=False),
            create_norm(norm, low_out_chs),
            nn.ReLU(inplace=True),
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(256 + low_out_chs, 256, 3, padding=1, bias=False),
            create_norm(norm, 256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            create_norm(norm, 256),
            nn.ReLU(inplace=True),
        )
        self.logits = nn.Conv2d(256, num_classes, 1)

    def forward(self, x: torch.Tensor, low: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = upsample(self.aspp(x), low.shape[-2:])
        x = self.fuse(torch.cat([x, self.low_project(low)], dim=1))
        return x if pre_logits else self.logits(x)


# The DeepLabV3 and FCN heads end in the 1x1 conv to the classes at index 4 (DeepLabV3+'s is
# ``logits``); ``reset_classifier`` replaces it.
_LOGITS_INDEX = 4
_ASPP_RATES_AT_STRIDE_16 = (6, 12, 18)  # the paper's rates; doubled at output stride 8
# Per head: the output strides it takes, its default first (DeepLabV3's 8 as torchvision's;
# DeepLabV3+'s 16 as the paper's; FCN's 32, the paper's FCN-32s resolution).
_OUTPUT_STRIDES = {"deeplabv3": (8, 16), "deeplabv3plus": (16, 8), "fcn": (32, 8, 16)}


class SegmentationModel(ZooModel):
    """A backbone, a head (``"deeplabv3"``, ``"deeplabv3plus"`` or ``"fcn"``) and an optional
    auxiliary FCN head.

    Interface, as far as it fits a dense predictor:
    - ``forward_intermediates(x)``: the backbone's feature maps (finest first), ``feature_info``
      describes them;
    - ``forward_features(x)``: what the head reads: the last backbone map (DeepLabV3, FCN), or
      the backbone's maps (DeepLabV3+, which also reads the finest); ``forward_head`` of that
      gives the logits at the head's resolution (``pre_logits=True``: the head's output before
      its last 1x1 conv);
    - ``forward(x)``: ``{"out": logits at input size}`` (+ ``"aux"``);
    - ``features_only`` is refused: build the backbone itself with ``create_model`` instead.
    """

    # The layer that holds the classes: the last conv of the head (named ``classifier`` as in torchvision).
    classifier_name = f"classifier.{_LOGITS_INDEX}"

    def __init__(
        self,
        backbone: str = "resnet50",
        head: str = "deeplabv3",
        num_classes: int = 11,
        in_chans: int = 3,
        output_stride: int | None = None,
        aux_loss: bool = False,
        norm: str = "batchnorm",
        attn: str | None = None,
        dropout: float | None = None,
    ):
        """
        Args:
            backbone: a registered classification model with ``feature_info`` (resnet18, ...).
            head: ``"deeplabv3"`` (ASPP head), ``"deeplabv3plus"`` (ASPP and a decoder from the
                finest backbone map) or ``"fcn"`` (3x3 + 1x1 convs).
            output_stride: 8 or 16 for DeepLabV3 (ASPP rates 12/24/36 or 6/12/18; default 8, as
                torchvision) and DeepLabV3+ (default 16, as the paper); 8, 16 or 32 for FCN
                (default 32, the paper's FCN-32s resolution).
            aux_loss: add the auxiliary FCN head on the stage before last (``"aux"`` output).
            norm, attn: normalisation and attention of the backbone (``norm`` also in the heads).
            dropout: ASPP projection dropout (DeepLabV3 and V3+, default 0.5) or head dropout
                (FCN, 0.1).
        """
        super().__init__()
        if head not in _OUTPUT_STRIDES:
            raise ValueError(f"head must be one of {', '.join(map(repr, _OUTPUT_STRIDES))}, got {head!r}")
        allowed_strides = _OUTPUT_STRIDES[head]
        output_stride = output_stride or allowed_strides[0]
        if output_stride not in allowed_strides:
            raise ValueError(f"{head} takes output_stride in {sorted(allowed_strides)}, got {output_stride}")
        if num_classes <= 0:
            raise ValueError(f"a segmentation model needs num_classes > 0, got {num_classes}")
        self.num_classes, self.in_chans, self.aux_loss = num_classes, in_chans, aux_loss
        self.head_type, self.output_stride = head, output_stride
        out_indices = (-2, -1) if aux_loss else (-1,)
        if head == "deeplabv3plus":  # the decoder reads the finest map too
            out_indices = (0, *out_indices)
        # The backbone's classification weights must match these arguments; output_stride only
        # turns strides into dilations, which changes no weight's shape or meaning.
        self.backbone_arch, self.backbone_args = backbone, dict(norm=norm, attn=attn)
        self.backbone = create_backbone(
            backbone, out_indices, in_chans=in_chans, norm=norm, attn=attn, output_stride=output_stride
        )
        self.first_conv_name = f"backbone.{self.backbone.first_conv_name}"
        self.feature_info = self.backbone.feature_info
        self.num_features = self.feature_info[-1]["num_chs"]
        rates = tuple(r * 16 // output_stride for r in _ASPP_RATES_AT_STRIDE_16)
        if head == "deeplabv3":
            aspp_dropout = 0.5 if dropout is None else dropout
            self.classifier = DeepLabHead(self.num_features, num_classes, rates, aspp_dropout, norm)
        elif head == "deeplabv3plus":
            aspp_dropout = 0.5 if dropout is None else dropout
            low_chs = self.feature_info[0]["num_chs"]
            self.classifier = DeepLabV3PlusHead(
                self.num_features, low_chs, num_classes, rates, aspp_dropout, norm
            )
            self.classifier_name = "classifier.logits"
        else:
            self.classifier = FCNHead(
                self.num_features, num_classes, 0.1 if dropout is None else dropout, norm
            )
        self.aux_classifier = (
            FCNHead(self.feature_info[-2]["num_chs"], num_classes, 0.1, norm) if aux_loss else None
        )
        self._init_heads()

    def _init_heads(self) -> None:
        # The backbone initialises itself; the heads get the same He init for their convs.
        for head in (self.classifier, self.aux_classifier):
            for m in head.modules() if head is not None else ():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        """New, freshly initialised 1x1 logit convs (main and auxiliary) for ``num_classes``."""
        if num_classes <= 0:
            raise ValueError(
                "a segmentation model cannot drop its head (num_classes=0); "
                "build the backbone with create_model(..., features_only=True) instead"
            )
        self.num_classes = num_classes
        parent, _, name = self.classifier_name.rpartition(".")
        old = self.get_classifier()
        setattr(self.get_submodule(parent), name, nn.Conv2d(old.in_channels, num_classes, 1))
        if self.aux_classifier is not None:
            old = self.aux_classifier[_LOGITS_INDEX]
            self.aux_classifier[_LOGITS_INDEX] = nn.Conv2d(old.in_channels, num_classes, 1)

    def as_features(self, out_indices=None):
        raise NotImplementedError(
            f"{type(self).__name__} is a dense predictor; for feature maps build its backbone with "
            "create_model(backbone, features_only=True, out_indices=...)"
        )

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        features = self.backbone(x)
        return features if self.head_type == "deeplabv3plus" else features[-1]

    def forward_head(self, x: torch.Tensor | list[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """The logits of ``forward_features``' output (DeepLabV3+: the backbone's maps, the
        finest and the last read)."""
        if self.head_type == "deeplabv3plus":
            return self.classifier(x[-1], x[0], pre_logits=pre_logits)
        for i, layer in enumerate(self.classifier):
            if pre_logits and i == _LOGITS_INDEX:
                break
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_input(x)
        size = x.shape[-2:]
        features = self.backbone(x)
        head_input = features if self.head_type == "deeplabv3plus" else features[-1]
        out = {"out": upsample(self.forward_head(head_input), size)}
        if self.aux_classifier is not None:
            out["aux"] = upsample(self.aux_classifier(features[-2]), size)
        return out


def upsample(logits: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


# CamVid-sized (360x480), 11 classes by default.
_register = partial(register_model, SegmentationModel, task="segmentation", input_size=(3, 360, 480))


@_register()
def deeplabv3_resnet18():
    return dict(backbone="resnet18", head="deeplabv3")


@_register()
def deeplabv3_resnet50():
    return dict(backbone="resnet50", head="deeplabv3")


@_register()
def deeplabv3plus_resnet18():
    return dict(backbone="resnet18", head="deeplabv3plus")


@_register()
def deeplabv3plus_resnet50():
    return dict(backbone="resnet50", head="deeplabv3plus")


@_register(family="fcn")
def fcn_resnet18():
    return dict(backbone="resnet18", head="fcn")


@_register(family="fcn")
def fcn_resnet50():
    return dict(backbone="resnet50", head="fcn")

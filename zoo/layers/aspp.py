"""Atrous Spatial Pyramid Pooling (Chen et al., "Rethinking Atrous Convolution", 2017).

Built from small ``nn.Sequential`` pieces laid out as torchvision's DeepLabV3 does, so the
state dicts line up: ``convs[0]`` is the 1x1 branch, ``convs[1..n]`` the dilated 3x3
branches, ``convs[-1]`` the image-pooling branch, then ``project``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .norm import create_norm


class ASPPConv(nn.Sequential):
    """A dilated 3x3 branch."""

    def __init__(self, in_channels: int, out_channels: int, rate: int, norm: str = "batchnorm"):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=rate, dilation=rate, bias=False),
            create_norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class ASPPPooling(nn.Sequential):
    """The image-level branch: global average pool, 1x1 conv, upsample back to the map's size."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batchnorm"):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            # BatchNorm over a 1x1 map needs more than one sample per batch; GroupNorm/LayerNorm do not.
            create_norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(
        self,
        in_channels: int,
        rates: tuple[int, ...] = (6, 12, 18),
        out_channels: int = 256,
        dropout: float = 0.5,
        norm: str = "batchnorm",
    ):
        super().__init__()
        branches = [
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                create_norm(norm, out_channels),
                nn.ReLU(inplace=True),
            )
        ]
        branches += [ASPPConv(in_channels, out_channels, rate, norm) for rate in rates]
        branches.append(ASPPPooling(in_channels, out_channels, norm))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
            create_norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))

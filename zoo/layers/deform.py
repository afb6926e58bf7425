"""Deformable convolution v2 (Zhu et al., "Deformable ConvNets v2", CVPR 2019).

The layer owns its offset-and-mask predictor, a plain conv initialised to zero, so at the
start every kernel tap samples the regular grid with a mask of sigmoid(0) * 2 = 1 and the
layer is exactly a plain convolution; training then learns where to look. Sampling is
``torchvision.ops.deform_conv2d``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d


class DeformConv2d(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.dilation = _pair(dilation)
        if padding is None:
            padding = dilation * (self.kernel_size[0] - 1) // 2
        self.padding = _pair(padding)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        taps = self.kernel_size[0] * self.kernel_size[1]
        # 2 offsets (dy, dx) and 1 mask logit per kernel tap, predicted at every output position.
        self.offset_mask = nn.Conv2d(
            in_channels, 3 * taps, self.kernel_size, self.stride, self.padding, self.dilation, bias=True
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def offsets_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets (N, 2*K, H', W') in (dy, dx) pairs per tap and mask (N, K, H', W') in [0, 2]."""
        taps = self.kernel_size[0] * self.kernel_size[1]
        out = self.offset_mask(x)
        offset, mask_logits = out.split([2 * taps, taps], dim=1)
        # 2 * sigmoid so that the zero-initialised predictor gives a mask of exactly 1.
        return offset, 2 * mask_logits.sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type) or x.dtype == torch.bfloat16:
            # deform_conv2d has no bfloat16 CPU kernel: under autocast the layer (offset
            # predictor and sampling alike) runs in float32, and hands back float32.
            with torch.autocast(x.device.type, enabled=False):
                return self._forward(x.float())
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offsets_and_mask(x)
        return deform_conv2d(
            x,
            offset,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=mask,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.weight.shape[1]}, {self.weight.shape[0]}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}"
        )

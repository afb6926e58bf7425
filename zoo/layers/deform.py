"""Deformable convolution v2 (Zhu et al., "Deformable ConvNets v2", CVPR 2019).

The layer owns its offset-and-mask predictor, a plain conv initialised to zero, so at the
start every kernel tap samples the regular grid with a mask of sigmoid(0) * 2 = 1 and the
layer is exactly a plain convolution; training then learns where to look.

Two implementations of the same operator, chosen by ``impl``:

- ``"torchvision"``: ``torchvision.ops.deform_conv2d``, the reference.
- ``"grid_sample"``: :func:`deform_conv2d_sampled`, bilinear sampling with ``F.grid_sample``
  followed by one matmul. Same numbers (tested against torchvision, outputs and all
  gradients), but on the CPU torchvision's kernel is far slower, above all its backward:
  forward + backward of a 128->128 3x3 layer on an 8x128x48x64 map took 3.68 s with
  torchvision and 0.73 s sampled (``python -m zoo.bench deform``; 2-core CPU, torch 2.14,
  float32).

``"auto"`` (the default) takes torchvision on CUDA, where its kernel is fast, and the sampled
version elsewhere.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d

IMPLS = ("auto", "torchvision", "grid_sample")


def deform_conv2d_sampled(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``torchvision.ops.deform_conv2d`` (one offset group) as grid sampling plus a matmul.

    Every kernel tap k at output position (i, j) reads the input at
    ``(i * stride - pad + ky * dilation + dy, j * stride - pad + kx * dilation + dx)``
    bilinearly, zero outside the image (as torchvision), scaled by the mask. The samples of
    all taps form the im2col matrix that the weight multiplies.
    """
    n, c, h, w = x.shape
    out_c, in_c, kh, kw = weight.shape
    if in_c != c or offset.shape[1] != 2 * kh * kw:
        raise ValueError(
            f"one offset group expected: input channels {c}, weight {tuple(weight.shape)}, "
            f"offset channels {offset.shape[1]} (want {2 * kh * kw})"
        )
    taps = kh * kw
    ho, wo = offset.shape[-2:]
    like = dict(device=x.device, dtype=x.dtype)
    rows = torch.arange(ho, **like) * stride[0] - padding[0]
    cols = torch.arange(wo, **like) * stride[1] - padding[1]
    tap_y = (torch.arange(kh, **like) * dilation[0]).repeat_interleave(kw)
    tap_x = (torch.arange(kw, **like) * dilation[1]).repeat(kh)
    off = offset.view(n, taps, 2, ho, wo)  # (dy, dx) per tap, torchvision's layout
    y = rows.view(1, 1, ho, 1) + tap_y.view(1, taps, 1, 1) + off[:, :, 0]
    x_pos = cols.view(1, 1, 1, wo) + tap_x.view(1, taps, 1, 1) + off[:, :, 1]
    # Pixel index p -> grid_sample's [-1, 1] with align_corners=False: (2p + 1) / size - 1.
    grid = torch.stack([(2 * x_pos + 1) / w - 1, (2 * y + 1) / h - 1], dim=-1)
    sampled = F.grid_sample(
        x, grid.view(n, taps * ho, wo, 2), mode="bilinear", padding_mode="zeros", align_corners=False
    ).view(n, c, taps, ho * wo)
    if mask is not None:
        sampled = sampled * mask.view(n, 1, taps, ho * wo)
    out = torch.matmul(weight.reshape(out_c, c * taps), sampled.view(n, c * taps, ho * wo))
    out = out.view(n, out_c, ho, wo)
    return out if bias is None else out + bias.view(1, out_c, 1, 1)


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
        impl: str = "auto",
    ):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.impl = impl
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
            # Under autocast the layer (offset predictor and sampling alike) runs in float32 and
            # hands back float32: torchvision's deform_conv2d has no bfloat16 CPU kernel, and
            # bfloat16 sampling coordinates would lose the sub-pixel part of the offsets.
            with torch.autocast(x.device.type, enabled=False):
                return self._forward(x.float())
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offsets_and_mask(x)
        use_torchvision = self.impl == "torchvision" or (self.impl == "auto" and x.is_cuda)
        op = deform_conv2d if use_torchvision else deform_conv2d_sampled
        return op(
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
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, impl={self.impl}"
        )

"""Channel and spatial attention, chosen by name: ``se``, ``cbam`` or ``None``.

- ``se`` follows Hu et al., "Squeeze-and-Excitation Networks" (CVPR 2018): global average
  pool, bottleneck MLP (1x1 convs with bias, ReLU, reduction 16, hidden width rounded to a
  multiple of 8 as timm does), sigmoid gate, channel rescale. Same parameters and output as
  timm's ``SEModule``.
- ``cbam`` follows Woo et al., "CBAM: Convolutional Block Attention Module" (ECCV 2018),
  as the paper's equations write it: channel attention from the average- and max-pooled
  descriptors through one shared MLP (summed, then sigmoid), followed by spatial attention
  from a 7x7 conv over the channel-wise average and max maps (sigmoid, no BatchNorm).
"""

from __future__ import annotations

import torch
import torch.nn as nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below ``min_value``."""
    min_value = min_value or divisor
    return max(min_value, int(value + divisor / 2) // divisor * divisor)


def _hidden_channels(channels: int, rd_ratio: float) -> int:
    return make_divisible(channels * rd_ratio, 8)


class SEModule(nn.Module):
    def __init__(self, channels: int, rd_ratio: float = 1 / 16):
        super().__init__()
        hidden = _hidden_channels(channels, rd_ratio)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.fc2(self.act(self.fc1(s)))
        return x * s.sigmoid()


class ChannelAttention(nn.Module):
    """CBAM's channel gate: a shared MLP over the avg- and max-pooled descriptors."""

    def __init__(self, channels: int, rd_ratio: float = 1 / 16):
        super().__init__()
        hidden = _hidden_channels(channels, rd_ratio)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        mx = self.fc2(self.act(self.fc1(x.amax((2, 3), keepdim=True))))
        return x * (avg + mx).sigmoid()


class SpatialAttention(nn.Module):
    """CBAM's spatial gate: a 7x7 conv over the channel-wise mean and max maps."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * self.conv(maps).sigmoid()


class CbamModule(nn.Module):
    def __init__(self, channels: int, rd_ratio: float = 1 / 16, spatial_kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, rd_ratio)
        self.spatial = SpatialAttention(spatial_kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


_ATTN_MAP: dict[str, type[nn.Module]] = {"se": SEModule, "cbam": CbamModule}


def get_attn_layer(attn: str | type[nn.Module] | None) -> type[nn.Module] | None:
    if attn is None or (isinstance(attn, str) and attn.lower() == "none"):
        return None
    if isinstance(attn, str):
        if attn.lower() not in _ATTN_MAP:
            raise ValueError(
                f"attn must be one of {sorted(_ATTN_MAP)}, None or an nn.Module class, got {attn!r}"
            )
        return _ATTN_MAP[attn.lower()]
    if isinstance(attn, type) and issubclass(attn, nn.Module):
        return attn
    raise TypeError(f"attn must be a name, None or an nn.Module class, got {type(attn).__name__}")


def create_attn(attn: str | type[nn.Module] | None, channels: int) -> nn.Module | None:
    """The attention module for ``channels``, or ``None`` when ``attn`` is ``None``/``'none'``."""
    cls = get_attn_layer(attn)
    return None if cls is None else cls(channels)

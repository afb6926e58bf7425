"""Normalization layers, chosen by name: ``batchnorm``, ``layernorm``, ``groupnorm``, ``none``.

BatchNorm normalises each channel over the batch and the spatial positions; LayerNorm here
normalises each sample's channel vector at every spatial position (the channels-only
LayerNorm ConvNeXt uses for NCHW maps), so it behaves the same at any batch size.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of an NCHW tensor, per sample and per position."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class GroupNorm(nn.GroupNorm):
    """GroupNorm with up to 32 groups: gcd(channels, 32), the largest power of two <= 32 dividing them."""

    def __init__(self, num_channels: int, max_groups: int = 32):
        super().__init__(math.gcd(num_channels, max_groups), num_channels)


class NoNorm(nn.Identity):
    """No normalization (accepts and ignores the channel count)."""

    def __init__(self, num_channels: int):
        super().__init__()


_NORM_MAP: dict[str, type[nn.Module]] = {
    "batchnorm": nn.BatchNorm2d,
    "layernorm": LayerNorm2d,
    "groupnorm": GroupNorm,
    "none": NoNorm,
}


NormLayer = str | type[nn.Module] | functools.partial | None


def get_norm_layer(norm: NormLayer) -> type[nn.Module] | functools.partial:
    """Resolve a norm name, a class taking ``num_channels``, or a ``functools.partial`` of such a
    class (``partial(GroupNorm, max_groups=8)``, as timm's ``get_norm_layer`` accepts) to a callable."""
    if norm is None:
        return NoNorm
    if isinstance(norm, str):
        key = norm.lower().replace("_", "")
        if key not in _NORM_MAP:
            raise ValueError(f"norm must be one of {sorted(_NORM_MAP)} or an nn.Module class, got {norm!r}")
        return _NORM_MAP[key]
    if isinstance(norm, type) and issubclass(norm, nn.Module):
        return norm
    if (
        isinstance(norm, functools.partial)
        and isinstance(norm.func, type)
        and issubclass(norm.func, nn.Module)
    ):
        return norm
    raise TypeError(
        f"norm must be a name, an nn.Module class or a functools.partial of one, got {type(norm).__name__}"
    )


def create_norm(norm: NormLayer, num_channels: int) -> nn.Module:
    return get_norm_layer(norm)(num_channels)


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm for (B, N, D) token sequences: each of the D channels is normalised over the
    batch and the tokens, as ``BatchNorm2d`` normalises over a map's positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


TOKEN_NORMS = ("layernorm", "batchnorm")


def create_token_norm(norm: str, dim: int) -> nn.Module:
    """The norm of a transformer over (B, N, D) tokens: ``layernorm`` (per token, ViT's) or
    ``batchnorm`` (per channel over the batch and tokens, the CNNs')."""
    key = norm.lower().replace("_", "")
    if key == "layernorm":
        return nn.LayerNorm(dim, eps=1e-6)
    if key == "batchnorm":
        return TokenBatchNorm(dim)
    raise ValueError(f"a transformer's norm must be one of {TOKEN_NORMS}, got {norm!r}")

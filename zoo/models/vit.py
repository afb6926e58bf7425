"""Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021).

The image is cut into ``patch_size`` x ``patch_size`` patches, each linearly embedded (a
strided conv); a learned class token is prepended and learned position embeddings are added;
then ``depth`` pre-norm transformer blocks, a final LayerNorm and a linear head on the class
token (``global_pool="token"``). With ``global_pool="avg"`` the head reads the mean of the
patch tokens instead, and the final LayerNorm moves after the pooling (named ``fc_norm``), as
in timm and MAE. ``norm="batchnorm"`` replaces every LayerNorm with BatchNorm over the tokens
(``zoo.layers.TokenBatchNorm``): the CNNs' normalization in a transformer, to measure the claim
that a transformer needs LayerNorm.

Dropout follows the paper (Appendix B.1): ``drop_rate`` is applied right after adding the
position embeddings and after every dense layer in the blocks except the qkv projection.
``drop_path_rate`` is stochastic depth, rising linearly from 0 to that value over the blocks.

Learned position embeddings fix the input size: a model takes ``img_size`` x ``img_size``
images only (pass ``img_size=28`` for Fashion-MNIST), unless ``dynamic_img_size=True``, which
resamples the embeddings to the grid of each input (training on smaller crops than the
evaluation size, for one). Parameter names follow timm, so timm's
``vit_tiny_patch16_224`` and ``vit_small_patch16_224`` state dicts load unchanged.

``feature_info`` lists up to four evenly spaced block outputs, ending with the last block; each
is returned as a (B, embed_dim, H/p, W/p) map of patch tokens (class token dropped, no norm).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._registry import register_model
from ..layers import TransformerBlock, create_token_norm
from ._base import ZooModel, check_drop_path_rate, classifier_or_identity


class PatchEmbed(nn.Module):
    """Non-overlapping patches, each projected linearly to ``embed_dim``: (B, C, H, W) -> (B, N, D)."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size ({img_size}) must be divisible by patch_size ({patch_size})")
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def create_fc_norm(norm: str, dim: int) -> nn.Module:
    """The norm after average pooling, on (B, D) vectors."""
    return (
        nn.BatchNorm1d(dim) if norm.lower().replace("_", "") == "batchnorm" else create_token_norm(norm, dim)
    )


def feature_block_indices(depth: int, n: int = 4) -> tuple[int, ...]:
    """Up to ``n`` evenly spaced block indices ending with the last: depth 12 -> (2, 5, 8, 11)."""
    step = max(depth // n, 1)
    return tuple(i for i in (depth - 1 - step * k for k in reversed(range(n))) if i >= 0)


class VisionTransformer(ZooModel):
    first_conv_name = "patch_embed.proj"
    classifier_name = "head"

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "token",
        norm: str = "layernorm",
        dynamic_img_size: bool = False,
    ):
        super().__init__()
        if global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}")
        if not isinstance(img_size, int):
            raise TypeError(f"img_size must be an int (square images), got {img_size!r}")
        check_drop_path_rate(drop_path_rate)
        self.num_classes, self.in_chans, self.global_pool = num_classes, in_chans, global_pool
        self.num_features = self.embed_dim = embed_dim
        # dynamic_img_size: any multiple of the patch size, the position embeddings resampled to
        # its grid (bicubic), as timm's option of that name: a model trains on smaller crops and
        # is evaluated at img_size, where its own embeddings apply unchanged.
        self.dynamic_img_size = dynamic_img_size
        self.fixed_input_size = None if dynamic_img_size else (img_size, img_size)

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.grid_size = self.patch_embed.grid_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)

        drop_paths = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.Sequential(
            *[
                TransformerBlock(
                    embed_dim,
                    num_heads,
                    mlp_ratio,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=dp,
                    norm=norm,
                )
                for dp in drop_paths
            ]
        )
        use_fc_norm = global_pool == "avg"
        self.norm = nn.Identity() if use_fc_norm else create_token_norm(norm, embed_dim)
        self.fc_norm = create_fc_norm(norm, embed_dim) if use_fc_norm else nn.Identity()
        self.head = classifier_or_identity(embed_dim, num_classes)

        # Kept apart from feature_info, which as_features() narrows to the returned maps.
        self.feature_blocks = feature_block_indices(depth)
        self.feature_info = [
            dict(num_chs=embed_dim, reduction=patch_size, module=f"blocks.{i}") for i in self.feature_blocks
        ]
        self._init_weights()

    def _init_weights(self) -> None:
        # timm's default ViT init: truncated normal (std 0.02) for the position embeddings and every
        # linear layer, a near-zero class token; the patch conv and LayerNorms keep PyTorch's init.
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def grid_of(self, x: torch.Tensor) -> tuple[int, int]:
        """The patch grid of an input image batch (B, C, H, W)."""
        p = self.patch_embed.proj.stride[0]
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(
                f"image sides must be multiples of the patch size {p}, got {tuple(x.shape[-2:])}"
            )
        return x.shape[-2] // p, x.shape[-1] // p

    def position_embeddings(self, grid: tuple[int, int]) -> torch.Tensor:
        """(1, 1+N, D) position embeddings for a ``grid`` of patches: the model's own at its
        grid, else its patch embeddings resampled bicubically (the class token's unchanged)."""
        if tuple(grid) == tuple(self.grid_size):
            return self.pos_embed
        cls, patches = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patches = patches.reshape(1, *self.grid_size, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
        return torch.cat([cls, patches.flatten(2).transpose(1, 2)], dim=1)

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens with the class token in front and the position embeddings added: (B, 1+N, D)."""
        pos = self.position_embeddings(self.grid_of(x)) if self.dynamic_img_size else self.pos_embed
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pos_drop(x + pos)

    def tokens_to_map(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """(B, 1+N, D) tokens -> (B, D, H/p, W/p) map of the patch tokens (class token dropped)."""
        return x[:, 1:].transpose(1, 2).reshape(x.shape[0], x.shape[-1], *(grid or self.grid_size))

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        grid = self.grid_of(x)
        x = self.forward_embed(x)
        features = []
        for i, block in enumerate(self.blocks[: self.feature_blocks[-1] + 1]):
            x = block(x)
            if i in self.feature_blocks:
                features.append(self.tokens_to_map(x, grid))
        return features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens after the last block and the final norm: (B, 1+N, D)."""
        return self.norm(self.blocks(self.forward_embed(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x[:, 0] if self.global_pool == "token" else x[:, 1:].mean(dim=1)
        x = self.fc_norm(x)
        return x if pre_logits else self.head(x)


# ImageNet ViTs (224 px, 1000 classes), state-dict compatible with timm.
@register_model(VisionTransformer)
def vit_tiny_patch16_224():
    return dict(patch_size=16, embed_dim=192, depth=12, num_heads=3)


@register_model(VisionTransformer)
def vit_small_patch16_224():
    return dict(patch_size=16, embed_dim=384, depth=12, num_heads=6)


# Small-image ViTs: 4x4 patches on 32 px images give an 8x8 grid (7x7 with img_size=28).
# The widths and heads are those of ViT-Ti/S; depth 9 instead of 12 suits the 64-token
# sequences and small datasets. 10 classes by default, as on CIFAR-10 and Fashion-MNIST.
_small = partial(
    register_model, VisionTransformer, input_size=(3, 32, 32), defaults=dict(img_size=32, num_classes=10)
)


@_small()
def vit_tiny_patch4_32():
    return dict(patch_size=4, depth=9, embed_dim=192, num_heads=3)


@_small()
def vit_small_patch4_32():
    return dict(patch_size=4, depth=9, embed_dim=384, num_heads=6)


# 16x16 patches on 128 px photos (Imagenette): an 8x8 grid of 64 tokens, ViT-Ti's width and
# depth. 10 classes by default. norm="batchnorm" is the same ViT with BatchNorm over the tokens.
@register_model(VisionTransformer, input_size=(3, 128, 128), defaults=dict(img_size=128, num_classes=10))
def vit_tiny_patch16_128():
    return dict(patch_size=16, depth=12, embed_dim=192, num_heads=3)


# 7x7 patches on 28 px images: a 4x4 grid of 16 tokens. ViT-Ti's width at a quarter of the
# tokens of the patch-4 models trains at about 2.6x ResNet-20's cost on a 2-core CPU (658 vs
# 1699 img/s forward + backward, bf16, batch 128, AMD Zen 5), where vit_tiny_patch4_32 at
# 28 px costs 7x: the concept zoo's self-attention row.
@register_model(
    VisionTransformer, input_size=(1, 28, 28), defaults=dict(img_size=28, num_classes=10, in_chans=1)
)
def vit_tiny_patch7_28():
    return dict(patch_size=7, depth=9, embed_dim=192, num_heads=3)

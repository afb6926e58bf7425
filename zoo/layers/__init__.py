"""The seed's building blocks, each small and chosen by name."""

from .aspp import ASPP, ASPPConv, ASPPPooling
from .attention import CbamModule, SEModule, create_attn, get_attn_layer, make_divisible
from .deform import DeformConv2d, deform_conv2d_sampled
from .dilation import stage_strides_and_dilations
from .norm import LayerNorm2d, TokenBatchNorm, create_norm, create_token_norm, get_norm_layer
from .transformer import Attention, Mlp, TransformerBlock

__all__ = [
    "ASPP",
    "ASPPConv",
    "ASPPPooling",
    "Attention",
    "CbamModule",
    "DeformConv2d",
    "deform_conv2d_sampled",
    "LayerNorm2d",
    "TokenBatchNorm",
    "Mlp",
    "SEModule",
    "TransformerBlock",
    "create_attn",
    "create_norm",
    "create_token_norm",
    "get_attn_layer",
    "get_norm_layer",
    "make_divisible",
    "stage_strides_and_dilations",
]

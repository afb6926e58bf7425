"""``create_model``: one place that turns a name into a built (and possibly pretrained) model."""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import torch
import torch.nn as nn

from ._registry import get_entry, split_name


class UnknownArgumentError(TypeError):
    """A keyword argument the model does not take (a misspelling, usually)."""


def check_kwargs(arch: str, cls: type, kwargs: dict[str, Any]) -> None:
    """Raise ``UnknownArgumentError`` naming each argument ``cls.__init__`` does not accept."""
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p != "self" and params[p].kind is not inspect.Parameter.VAR_KEYWORD]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        hints = []
        for k in unknown:
            near = difflib.get_close_matches(k, accepted, n=3, cutoff=0.5)
            hints.append(f"{k!r}" + (f" (did you mean {', '.join(map(repr, near))}?)" if near else ""))
        raise UnknownArgumentError(
            f"{arch} got unknown argument(s) {', '.join(hints)}. It accepts: {', '.join(sorted(accepted))}."
        )


def build_model(
    arch: str, cls: type[nn.Module], model_args: dict[str, Any], kwargs: dict[str, Any]
) -> nn.Module:
    """Build ``cls`` from the variant's fixed ``model_args`` and the user's ``kwargs``.

    A user argument that the variant fixes (``depth`` for ``resnet20``) is an error, not a
    silent override; one the class does not take is an error that names it.
    """
    fixed = sorted(set(model_args) & set(kwargs))
    if fixed:
        raise UnknownArgumentError(
            f"{arch} fixes {', '.join(fixed)} (={', '.join(repr(model_args[k]) for k in fixed)}); "
            f"pick another registered variant instead of overriding it"
        )
    check_kwargs(arch, cls, kwargs)
    return cls(**model_args, **kwargs)


def create_model(
    name: str,
    pretrained: bool | str = False,
    num_classes: int | None = None,
    in_chans: int | None = None,
    features_only: bool = False,
    out_indices: tuple[int, ...] | None = None,
    checkpoint_path: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model by name (``arch`` or ``arch.tag``).

    Args:
        name: a registered architecture, optionally with a weights tag (``resnet20.fashion_mnist``).
        pretrained: ``True`` loads the tag's (or the architecture's default) verified weights;
            a string ``"hf-hub:ORG/REPO"`` loads a timm-compatible safetensors file from the Hub.
        num_classes, in_chans: change the head / first conv; with pretrained weights the
            classifier is re-initialised or the first conv adapted.
        features_only: return a backbone whose forward gives the multi-scale feature maps
            listed in ``model.feature_info``; ``out_indices`` picks the stages.
        checkpoint_path: a local safetensors file to load instead of the manifest's.
        **kwargs: architecture arguments (``norm=``, ``attn=``, ``output_stride=``, ...).
    """
    entry = get_entry(name)
    arch, tag = split_name(name)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    if pretrained or checkpoint_path:
        from .weights import create_pretrained

        model = create_pretrained(entry, tag, pretrained, checkpoint_path, kwargs)
    else:
        model = entry.fn(**kwargs)
    if features_only:
        model.as_features(out_indices)
    elif out_indices is not None:
        raise ValueError("out_indices only applies with features_only=True")
    return model


@torch.no_grad()
def model_info(
    name_or_model: str | nn.Module, input_size: tuple[int, int, int] | None = None
) -> dict[str, Any]:
    """Parameter count and MACs/FLOPs of one forward pass at the default (or given) input size.

    FLOPs come from ``torch.utils.flop_counter`` (a multiply-add counts as 2 FLOPs; MACs = FLOPs / 2).
    """
    from torch.utils.flop_counter import FlopCounterMode

    if isinstance(name_or_model, str):
        entry = get_entry(name_or_model)
        model = entry.fn()
        input_size = input_size or entry.input_size
        name = entry.name
    else:
        model = name_or_model
        name = type(model).__name__
        if input_size is None:
            raise ValueError("model_info(model) needs input_size=(C, H, W) when given a module, not a name")
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, *input_size))
    model.train(was_training)
    flops = counter.get_total_flops()
    return {
        "name": name,
        "params": sum(p.numel() for p in model.parameters()),
        "input_size": tuple(input_size),
        "flops": flops,
        "macs": flops // 2,
    }

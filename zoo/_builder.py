"""The public API: ``create_model``, ``list_models`` and ``model_info``, on top of every other layer.

``create_model`` turns a name into a built (and possibly pretrained) model: the registry
builds it, ``zoo.hub`` finds the file (locally, else on the Hub), ``zoo.weights`` verifies,
loads and adapts it. The same steps fill a dense model's backbone with a classifier's
weights (``backbone_weights=``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ._registry import ModelEntry, filter_names, get_entry, list_architectures, split_name
from .hub import download_external, resolve_file
from .layers import DeformConv2d
from .weights import (
    WeightsEntry,
    WeightsError,
    build_adapted,
    build_unvouched,
    find_weights,
    load_manifest,
    read_unverified,
    read_verified,
)

HF_HUB_PREFIX = "hf-hub:"


def list_models(filter: str | list[str] = "", task: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered names, sorted, filtered by fnmatch pattern(s) and task.

    With ``pretrained=True`` the list holds ``arch.tag`` names that have weights in the manifest.
    """
    if pretrained:
        return filter_names([e.name for e in load_manifest()], filter, task)
    return list_architectures(filter, task)


def create_model(
    name: str,
    pretrained: bool | str = False,
    num_classes: int | None = None,
    in_chans: int | None = None,
    features_only: bool = False,
    out_indices: tuple[int, ...] | None = None,
    checkpoint_path: str | None = None,
    backbone_weights: str | None = None,
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
        backbone_weights: for a model built on a backbone (segmentation, detection): the
            verified weights of a classification entry of the backbone's architecture
            (``"resnet18.imagenette"``) or ``"hf-hub:ORG/REPO"`` (a timm-compatible file), loaded
            into the backbone only; the heads keep their initialisation. What was loaded is
            recorded in ``model.backbone_weights`` (name and sha256).
        **kwargs: architecture arguments (``norm=``, ``attn=``, ``output_stride=``, ...).
    """
    check_arguments(name, num_classes, in_chans)
    entry = get_entry(name)
    arch, tag = split_name(name)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    if backbone_weights is not None and not isinstance(backbone_weights, str):
        raise TypeError(
            f"create_model: backbone_weights must be a weights name ('arch.tag' or 'hf-hub:ORG/REPO'), "
            f"got {type(backbone_weights).__name__} {backbone_weights!r}"
        )
    if backbone_weights and (pretrained or checkpoint_path):
        given = "pretrained=" if pretrained else "checkpoint_path="
        raise ValueError(
            f"create_model({name!r}): backbone_weights={backbone_weights!r} and {given} both say where "
            "weights come from (the full model's weights replace the backbone's); give one"
        )
    if pretrained or checkpoint_path:
        model = create_pretrained(entry, tag, pretrained, checkpoint_path, kwargs)
    else:
        model = entry.fn(**kwargs)
        if backbone_weights:
            load_backbone_weights(model, entry.name, backbone_weights)
    if features_only:
        model.as_features(out_indices)
    elif out_indices is not None:
        raise ValueError("out_indices only applies with features_only=True")
    return model


def check_arguments(name: Any, num_classes: Any, in_chans: Any) -> None:
    """One clear error for a name that is not a string or a class/channel count that is not a
    whole number in range (``num_classes=0`` is legal: no classifier, the features only)."""
    if not isinstance(name, str):
        raise TypeError(
            f"create_model: name must be a registered model name (str, 'arch' or 'arch.tag'), "
            f"got {name!r}; zoo.list_models() lists them"
        )
    for arg, value, low, meaning in (
        ("num_classes", num_classes, 0, "0 for no classifier"),
        ("in_chans", in_chans, 1, "1 for grey images, 3 for RGB"),
    ):
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(
                f"create_model: {arg} must be an int ({meaning}), got {type(value).__name__} {value!r}"
            )
        if value < low:
            raise ValueError(f"create_model: {arg} must be >= {low} ({meaning}), got {value}")


def create_pretrained(
    entry: ModelEntry,
    tag: str | None,
    pretrained: bool | str,
    checkpoint_path: str | Path | None,
    kwargs: dict,
) -> nn.Module:
    """``create_model``'s pretrained path (see ``zoo.weights`` for the order of the steps).

    - ``pretrained="hf-hub:ORG/REPO[@REV]"``: that repo's timm-compatible ``model.safetensors``.
    - ``checkpoint_path`` with no tag and ``pretrained=False``: that file as is, no manifest check.
    - otherwise the manifest's weights for ``arch.tag`` (or the arch's default), from
      ``checkpoint_path`` if given, verified against the manifest either way.
    """
    if isinstance(pretrained, str):
        if not pretrained.startswith(HF_HUB_PREFIX):
            raise ValueError(f"pretrained must be True, False or 'hf-hub:ORG/REPO', got {pretrained!r}")
        if tag or checkpoint_path:
            raise ValueError(
                f"pretrained={pretrained!r} names its own weights: drop the tag or checkpoint_path"
            )
        path = download_external(pretrained[len(HF_HUB_PREFIX) :])
        return build_unvouched(entry, read_unverified(path), kwargs, source=pretrained)
    if not pretrained and tag is None:
        return build_unvouched(entry, read_unverified(checkpoint_path), kwargs, source=str(checkpoint_path))
    w = find_weights(entry.name if tag is None else f"{entry.name}.{tag}")
    path = resolve_file(w, checkpoint_path)
    state = read_verified(path, w)
    model = build_adapted(
        entry, state, f"{w.name} ({path})", w.num_classes, w.input.in_chans, w.model_args, kwargs
    )
    model.pretrained_weights = w  # lets eval_transforms(model) find the preprocessing
    return model


def load_backbone_weights(model: nn.Module, name: str, spec: str) -> None:
    """Fill ``model.backbone`` with the classification weights ``spec`` names, as
    ``create_pretrained`` loads a whole model: a manifest entry's file is found, checked against
    its sha256 and loaded strictly into a classifier of the backbone's architecture (built with
    the backbone's arguments, its first conv adapted to ``in_chans``, no classifier); an
    ``hf-hub:`` file is read as ``pretrained="hf-hub:..."`` reads one. That classifier's tensors
    then load strictly into the backbone. Sets ``model.backbone_weights`` to name and sha256."""
    arch = getattr(model, "backbone_arch", "")
    if not arch or not hasattr(model, "backbone"):
        raise ValueError(
            f"backbone_weights={spec!r}: {name} is not built on a backbone; backbone_weights= fills "
            f"the backbone of a segmentation or detection model (for {name} itself use pretrained=)"
        )
    entry = get_entry(arch)
    kwargs = {**model.backbone_args, "in_chans": model.in_chans, "num_classes": 0}
    if spec.startswith(HF_HUB_PREFIX):
        path = download_external(spec[len(HF_HUB_PREFIX) :])
        sha256 = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        classifier = build_unvouched(entry, read_unverified(path), kwargs, source=spec)
        source = {"name": spec, "sha256": sha256}
    else:
        w = find_weights(spec)
        check_backbone_entry(w, name, entry, model.backbone_args)
        path = resolve_file(w)
        state = read_verified(path, w)
        classifier = build_adapted(
            entry, state, f"{w.name} ({path})", w.num_classes, w.input.in_chans, w.model_args, kwargs
        )
        source = {"name": w.name, "sha256": w.sha256}
    state = classifier.state_dict()  # num_classes=0: the classifier is left out
    # A DCN conv in the backbone (deform_stages) holds the plain conv's weight under the same
    # name, and an offset-and-mask predictor that classification weights do not have. Exactly
    # those predictor tensors keep their zero initialisation (the conv starts as the plain one);
    # every other tensor must come from the weights, and nothing may be left over (strict).
    own = model.backbone.state_dict()
    predictors = {
        f"{module_name}.offset_mask.{k}"
        for module_name, m in model.backbone.named_modules()
        if isinstance(m, DeformConv2d)
        for k in ("weight", "bias")
    }
    state = {**{k: own[k] for k in predictors if k not in state}, **state}
    try:
        model.backbone.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(
            f"backbone_weights {source['name']} do not fit {name}'s backbone ({arch}): {e}"
        ) from None
    model.backbone_weights = source


def check_backbone_entry(
    w: WeightsEntry, name: str, entry: ModelEntry, backbone_args: dict[str, Any]
) -> None:
    """Refuse, naming the entry and what was expected, weights that are not a classifier of the
    backbone's architecture trained with the backbone's arguments (``norm``, ``attn``, ...)."""
    if w.task != "classification":
        raise WeightsError(
            f"backbone_weights {w.name} are {w.task} weights; {name}'s backbone takes a classification "
            f"model's weights of its architecture {entry.name} (e.g. {entry.name}.TAG)"
        )
    if w.arch != entry.name:
        raise WeightsError(
            f"backbone_weights {w.name} are {w.arch} weights; {name}'s backbone is {entry.name}, so it "
            f"takes {entry.name}.TAG weights"
        )
    trained = entry.arguments(w.model_args)
    clash = [
        f"{k}={v!r} (the weights: {trained.get(k)!r})"
        for k, v in backbone_args.items()
        if trained.get(k) != v
    ]
    if clash:
        raise WeightsError(
            f"backbone_weights {w.name} were trained with other arguments than {name}'s backbone: "
            f"{', '.join(clash)}"
        )


@torch.no_grad()
def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# torch's flop counter knows the CUDA attention kernels but not the one scaled_dot_product_attention
# runs on the CPU, so a ViT's two attention matmuls per block would count as nothing.
_CPU_ATTENTION_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}


def model_info(
    name_or_model: str | nn.Module, input_size: tuple[int, int, int] | None = None
) -> dict[str, Any]:
    """Parameter count and MACs/FLOPs of one forward pass at the default (or given) input size.

    A name with a weights tag (``resnet20.fashion_mnist``) describes the model those weights
    load into: their ``num_classes``, ``in_chans``, model arguments and input size.

    FLOPs come from ``torch.utils.flop_counter`` (a multiply-add counts as 2 FLOPs; MACs = FLOPs / 2).
    """
    if isinstance(name_or_model, str):
        entry = get_entry(name_or_model)
        if split_name(name_or_model)[1]:  # arch.tag: the model and input the weights were trained for
            w = find_weights(name_or_model)
            model = entry.fn(**w.model_args, num_classes=w.num_classes, in_chans=w.input.in_chans)
            input_size = input_size or (w.input.in_chans, *w.input.input_size)
            name = w.name
        else:
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
    counter = FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION_FLOPS)
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

"""What a model looks at: small, hook-based implementations, and pictures of them.

- ``grad_cam`` (Selvaraju et al. 2017) for every CNN: the last feature stage's activations
  weighted by the spatially averaged gradients of the target score, ReLU, upsampled to the
  image. For a classifier the target is a class logit (default: the predicted class); for a
  segmentation model it is the sum of a class's logits over the pixels predicted as that class.
- ``attention_maps`` for SE / CBAM models: each CBAM module's spatial attention
  (sigmoid of its 7x7 conv), and each SE or CBAM channel gate's weights (sigmoid of its MLP).
- ``attention_rollout`` (Abnar & Zuidema 2020) for the ViT: per block the attention averaged
  over heads plus the identity (the residual), rows renormalised, multiplied through the
  blocks; the class token's row over the patches is the map.
- ``detection_maps`` for FCOS: where the detector fires, the per-location score
  sqrt(class probability x centerness) of the best class, per pyramid level; and, for the
  deformable head, ``zoo.viz.save_sampling_points`` (what ``eval.py --save-sampling`` draws).

Every map is (N, H, W) at the input's size with values in [0, 1] (each image's map divided by
its maximum; Grad-CAM and rollout are relative, not probabilities).

``zoo explain`` draws what the model's task shows by default (``TaskUse.explanations`` in
``zoo.tasks_use``, by the names of ``EXPLAINERS``): a classifier's or segmentation model's
Grad-CAM and SE/CBAM gates (a ViT's rollout instead), a detector's score maps and sampling
points.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib import colormaps
from torchvision.transforms import v2

from .data.registry import DatasetInfo
from .layers.attention import ChannelAttention, SEModule, SpatialAttention
from .layers.transformer import Attention
from .models.fcos import FCOS
from .models.vit import VisionTransformer
from .predict import ImageReadError, Preprocess, output_stems, read_image
from .tasks_use import ModelCard, as_rgb, get_use
from .viz import NothingDetectedError, pyplot, save_sampling_points


def _to_image_size(maps: torch.Tensor, size) -> torch.Tensor:
    """(N, h, w) maps -> (N, H, W), bilinear, each image's map scaled to [0, 1] by its maximum."""
    maps = F.interpolate(maps[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    maps = maps.clamp(min=0)
    peak = maps.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1)
    return maps / peak


@contextlib.contextmanager
def _hooks(modules_and_hooks):
    handles = [m.register_forward_hook(h) for m, h in modules_and_hooks]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# -- Grad-CAM -----------------------------------------------------------------------------------


def cam_layer(model: nn.Module) -> str:
    """The module Grad-CAM reads by default: the last stage of ``feature_info``, else the backbone."""
    if getattr(model, "feature_info", None) and not hasattr(model, "backbone"):
        return model.feature_info[-1]["module"]
    return "backbone"


def grad_cam(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None, layer: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM maps (N, H, W) in [0, 1] and the target class of each image.

    ``target`` (N,) classes; default the predicted class (classification) or the class covering
    most pixels (segmentation). ``layer`` a module name (default ``cam_layer(model)``); a module
    returning a list (a backbone's feature maps) is read at its last map.
    """
    model.eval()
    module = model.get_submodule(layer or cam_layer(model))
    saved = {}

    def keep(_, __, output):
        act = output[-1] if isinstance(output, (list, tuple)) else output
        act.retain_grad()
        saved["act"] = act

    x = x.detach().requires_grad_(True)  # gradients flow even where the weights are frozen
    with torch.enable_grad(), _hooks([(module, keep)]):
        out = model(x)
        if isinstance(out, dict):  # segmentation: the sum of the class's logits where it wins
            logits = out["out"]
            pred = logits.argmax(1)
            if target is None:
                target = torch.stack(
                    [torch.bincount(p.flatten(), minlength=logits.shape[1]).argmax() for p in pred]
                )
            region = (pred == target.view(-1, 1, 1)).float()
            score = (logits[torch.arange(len(x)), target] * region).sum()
        else:
            target = out.argmax(1) if target is None else target
            score = out[torch.arange(len(x)), target].sum()
        score.backward()
    act, grad = saved["act"], saved["act"].grad
    weights = grad.mean((2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(1)).detach()
    return _to_image_size(cam, x.shape[-2:]), target.detach()


# -- SE / CBAM ----------------------------------------------------------------------------------


@dataclasses.dataclass
class AttentionMaps:
    """SE / CBAM attention of a batch (all empty for a model without either).

    ``spatial``: each CBAM module's spatial map ``{module name: (N, H, W)}`` at the input size,
    values in [0, 1] (the sigmoid gate itself, upsampled, not rescaled). ``channel``: each SE or
    CBAM channel gate's weights ``{module name: (N, C)}`` in [0, 1]. ``stages``: the last CBAM
    module of each stage (consecutive modules of one resolution), in order.
    """

    spatial: dict[str, torch.Tensor]
    channel: dict[str, torch.Tensor]
    stages: list[str]


@torch.no_grad()
def attention_maps(model: nn.Module, x: torch.Tensor) -> AttentionMaps:
    """Every SE / CBAM gate's output for ``x``, read by forward hooks."""
    model.eval()
    spatial, channel, pending, resolution = {}, {}, {}, {}

    def spatial_hook(name):
        def hook(_, __, output):
            resolution[name] = tuple(output.shape[-2:])
            spatial[name] = output.sigmoid()

        return hook

    def se_hook(name):
        def hook(_, __, output):
            channel[name] = output.sigmoid().flatten(1)

        return hook

    def cbam_channel_hook(name):
        def hook(_, __, output):  # fc2 runs twice: on the average-, then on the max-pooled descriptor
            if name in pending:
                channel[name] = (pending.pop(name) + output).sigmoid().flatten(1)
            else:
                pending[name] = output

        return hook

    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, SpatialAttention):
            hooks.append((m.conv, spatial_hook(name)))
        elif isinstance(m, SEModule):
            hooks.append((m.fc2, se_hook(name)))
        elif isinstance(m, ChannelAttention):
            hooks.append((m.fc2, cbam_channel_hook(name)))
    with _hooks(hooks):
        model(x)
    size = tuple(x.shape[-2:])
    spatial = {
        k: F.interpolate(v, size=size, mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)
        for k, v in spatial.items()
    }
    names = list(resolution)
    stages = [
        n
        for n, after in zip(names, [*names[1:], None])
        if after is None or resolution[after] != resolution[n]
    ]
    return AttentionMaps(spatial, channel, stages)


# -- ViT attention rollout -------------------------------------------------------------------------


@torch.no_grad()
def attention_rollout(model: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """Attention rollout maps (N, H, W) in [0, 1]: how much the class token draws on each patch."""
    model.eval()
    attentions = []

    def hook(module):
        def save(_, inputs, qkv):
            b, n, _ = inputs[0].shape
            q, k, _ = qkv.reshape(b, n, 3, module.num_heads, -1).permute(2, 0, 3, 1, 4)
            attn = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1)  # as SDPA computes it
            attentions.append(attn.mean(1))

        return save

    with _hooks([(m.qkv, hook(m)) for m in model.modules() if isinstance(m, Attention)]):
        model(x)
    n = attentions[0].shape[-1]
    eye = torch.eye(n, dtype=attentions[0].dtype, device=attentions[0].device)  # where the maps are: CUDA too
    rollout = eye.expand(len(x), n, n)
    for attn in attentions:
        attn = attn + eye
        rollout = (attn / attn.sum(-1, keepdim=True)) @ rollout
    patches = rollout[:, 0, 1:]  # the class token's row, over the patch tokens
    h, w = x.shape[-2:]
    gh = round(((n - 1) * h / w) ** 0.5)
    return _to_image_size(patches.reshape(len(x), gh, (n - 1) // gh), (h, w))


# -- FCOS -----------------------------------------------------------------------------------------


@torch.no_grad()
def detection_maps(model: FCOS, x: torch.Tensor) -> list[torch.Tensor]:
    """Per pyramid level, (N, H, W) the best class's score sqrt(p x centerness) at each location,
    upsampled to the input (not rescaled: a score is already in [0, 1])."""
    model.eval()
    cls, _, ctr = model.head(model.forward_intermediates(x))
    maps = []
    for c, t in zip(cls, ctr):
        score = (c.float().sigmoid() * t.float().sigmoid()).sqrt().amax(1, keepdim=True)
        maps.append(F.interpolate(score, size=tuple(x.shape[-2:]), mode="nearest")[:, 0])
    return maps


# -- pictures -------------------------------------------------------------------------------------


def heatmap_overlay(image: torch.Tensor, heat: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """(3, H, W) uint8: ``image`` under the colour-mapped ``heat`` (H, W) in [0, 1] (turbo)."""
    colour = torch.from_numpy(colormaps["turbo"](heat.clamp(0, 1).numpy())[..., :3]).permute(2, 0, 1)
    mixed = (1 - alpha) * as_rgb(image).float() / 255 + alpha * colour.float()
    return (mixed * 255).round().clamp(0, 255).to(torch.uint8)


def panels(image: torch.Tensor, heats: list[torch.Tensor], titles: list[str], path: Path) -> str:
    """One PNG: the image, then the image under each heat map, titled."""
    plt = pyplot()
    n = len(heats) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9), squeeze=False)
    shown = [as_rgb(image)] + [heatmap_overlay(image, h) for h in heats]
    for ax, picture, title in zip(axes[0], shown, ["image", *titles]):
        ax.imshow(picture.permute(1, 2, 0).numpy())
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def channel_plot(weights: dict[str, torch.Tensor], path: Path) -> str:
    """One PNG: each SE/CBAM gate's channel weights for this image, a row per gate."""
    plt = pyplot()
    rows = len(weights)
    fig, axes = plt.subplots(rows, 1, figsize=(7, 0.9 * rows + 0.6), squeeze=False)
    for ax, (name, w) in zip(axes[:, 0], weights.items()):
        ax.bar(range(len(w)), w.numpy(), width=1.0, color="tab:blue")
        ax.set_ylim(0, 1)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[-1, 0].set_xlabel("channel")
    fig.suptitle("channel attention weights (sigmoid gate per channel)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


@dataclasses.dataclass
class Subject:
    """One image to explain: ``image`` (C, h, w) uint8 as the model sees it (resized, not
    normalised), ``x`` (1, C, h, w) preprocessed, and the stem of the pictures' paths."""

    model: nn.Module
    card: ModelCard
    image: torch.Tensor
    x: torch.Tensor
    stem: Path

    def path(self, kind: str) -> Path:
        return self.stem.with_name(f"{self.stem.name}_{kind}.png")


def show_gradcam(s: Subject, record: dict) -> None:
    """``gradcam``: Grad-CAM of the predicted class (or the class covering most pixels); the
    class is the record's ``target``."""
    cam, target = grad_cam(s.model, s.x)
    label = s.card.label_names[int(target[0])]
    record["pictures"]["gradcam"] = panels(s.image, [cam[0]], [f"Grad-CAM: {label}"], s.path("gradcam"))
    record["target"] = label


def show_attention(s: Subject, record: dict) -> None:
    """``cbam_spatial``: the last CBAM spatial map of each stage; ``channel_weights``: every SE
    or CBAM channel gate. Nothing for a model without either."""
    maps = attention_maps(s.model, s.x)
    if maps.spatial:
        heats = [maps.spatial[n][0] for n in maps.stages]
        record["pictures"]["cbam_spatial"] = panels(
            s.image, heats, [f"{n} (CBAM spatial)" for n in maps.stages], s.path("cbam_spatial")
        )
    if maps.channel:
        record["pictures"]["channel_weights"] = channel_plot(
            {k: v[0] for k, v in maps.channel.items()}, s.path("channel_weights")
        )


def show_rollout(s: Subject, record: dict) -> None:
    """``rollout``: the ViT's attention rollout."""
    if not isinstance(s.model, VisionTransformer):
        raise ValueError(f"attention rollout needs a VisionTransformer, not a {type(s.model).__name__}")
    record["pictures"]["rollout"] = panels(
        s.image, [attention_rollout(s.model, s.x)[0]], ["attention rollout"], s.path("rollout")
    )


def show_scores(s: Subject, record: dict) -> None:
    """``scores``: where an FCOS detector fires, one panel per pyramid level."""
    if not isinstance(s.model, FCOS):
        raise ValueError(f"detection score maps need an FCOS detector, not a {type(s.model).__name__}")
    titles = [f"P{stride.bit_length() - 1} score" for stride in s.model.strides]
    maps = [m[0] for m in detection_maps(s.model, s.x)]
    record["pictures"]["scores"] = panels(s.image, maps, titles, s.path("scores"))


def show_sampling(s: Subject, record: dict) -> None:
    """``sampling``: a deformable head's sampling points at the most confident detection (nothing
    for a model without deformable convs; a note when nothing is detected)."""
    if getattr(s.model, "head_conv", None) != "deform":  # DCNv2 in the backbone only: no head taps
        return
    card, spec = s.card, s.card.input
    info = DatasetInfo(
        card.name, card.task, card.label_names, spec.in_chans, tuple(spec.mean), tuple(spec.std), ()
    )
    try:
        record["pictures"]["sampling"] = str(save_sampling_points(s.model, s.x[0], info, s.path("sampling")))
    except NothingDetectedError as err:  # no location to show
        record.setdefault("notes", {})["sampling"] = str(err)


# What zoo explain can show, by the names a task's ``TaskUse.explanations`` lists.
EXPLAINERS = {
    "gradcam": show_gradcam,
    "attention": show_attention,
    "rollout": show_rollout,
    "scores": show_scores,
    "sampling": show_sampling,
}


def explain_image(
    model: nn.Module, card: ModelCard, image: torch.Tensor, x: torch.Tensor, stem: Path
) -> dict:
    """The pictures for one image, those its task shows by default (``TaskUse.explanations``):
    ``image`` (C, h, w) uint8 as the model sees it (resized, not normalised) and ``x``
    (1, C, h, w) preprocessed; ``{"pictures": {kind: path}, ...}``."""
    record: dict = {"pictures": {}}
    subject = Subject(model, card, image, x, stem)
    for kind in get_use(card.task).explanations(model):
        if kind not in EXPLAINERS:
            raise ValueError(
                f"the {card.task} task shows {kind!r}; zoo explain knows {', '.join(EXPLAINERS)}"
            )
        EXPLAINERS[kind](subject, record)
    return record


def shown_image(image: torch.Tensor, card: ModelCard) -> torch.Tensor:
    """``image`` (C, H, W) uint8 as ``Preprocess.resize`` gave it, brought to the size the model
    sees: weights with ``resize_size`` resize and center-crop in their own eval transforms (after
    ``resize``), so the picture gets the same steps and each map lies on the pixels it came from."""
    if card.weights is None or card.weights.input.resize_size is None:
        return image
    spec = card.weights.input
    mode = v2.InterpolationMode(spec.interpolation)
    return v2.CenterCrop(spec.input_size)(
        v2.Resize(spec.resize_size, interpolation=mode, antialias=True)(image)
    )


def explain_files(model: nn.Module, card: ModelCard, paths: list[str | Path], out: Path) -> list[dict]:
    """``explain_image`` for each file; an unreadable file gives ``{"path", "error"}``."""
    preprocess, records = Preprocess(card), []
    for path, stem in zip(paths, output_stems(paths, out)):
        try:
            image = read_image(path, card.input.in_chans)
        except ImageReadError as err:
            records.append({"path": str(path), "error": str(err)})
            continue
        seen = preprocess.resize(image)
        x = preprocess.normalise(seen)[None].to(next(model.parameters()).device)
        records.append({"path": str(path), **explain_image(model, card, shown_image(seen, card), x, stem)})
    return records

"""Semantic segmentation: a class for every pixel."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.utils import draw_segmentation_masks

from .base import DenseTaskUse, ModelCard, as_rgb, register_use, save_png, with_legend


@register_use
class SegmentationUse(DenseTaskUse):
    """``zoo predict``: ``"class_fractions"`` ``{label: fraction of the pixels}`` and ``"mask"``
    (H, W) class indices at the image's size (a tensor, dropped from JSON); draws the mask and
    an overlay. ``zoo export``: ``logits`` (N, classes, H, W) at the input size. ``zoo
    explain``: Grad-CAM of the class covering most pixels, and the SE/CBAM gates. eval.py:
    ``--save-overlays``."""

    name = "segmentation"
    eval_pictures = ("save_overlays",)

    def results(self, out, j, card, size, seen, topk):
        logits = F.interpolate(out["out"][j : j + 1].float(), size=size, mode="bilinear")
        mask = logits[0].argmax(0).cpu()
        counts = torch.bincount(mask.flatten(), minlength=len(card.label_names)).tolist()
        fractions = {name: round(c / mask.numel(), 4) for name, c in zip(card.label_names, counts)}
        return {"class_fractions": fractions, "mask": mask}

    def lines(self, record, threshold):
        ranked = sorted(record["class_fractions"].items(), key=lambda kv: -kv[1])
        return [f"  {fraction:7.2%}  {name}" for name, fraction in ranked if fraction > 0]

    def save(self, record, card, stem, threshold):
        return {"pictures": save_segmentation(record, card, stem)}

    def exportable(self, model):
        return SegmentationLogits(model).eval()

    def as_outputs(self, out):
        return [out["out"]]


class SegmentationLogits(nn.Module):
    """A segmentation model's ``out`` logits (at the input size), without the dict."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def save_segmentation(record: dict, card: ModelCard, stem: Path) -> dict[str, str]:
    """``<stem>_mask.png`` (class colours) and ``<stem>_overlay.png`` (the image, the mask at 50%,
    a legend of the classes present)."""
    colours, mask = card.colours(), record["mask"]
    mask_rgb = torch.tensor(colours, dtype=torch.uint8)[mask].permute(2, 0, 1)
    present = [c for c in range(len(card.label_names)) if (mask == c).any()]
    masks = torch.stack([mask == c for c in present]) if present else torch.zeros(0, *mask.shape, dtype=bool)
    overlay = draw_segmentation_masks(
        as_rgb(record["image"]), masks, alpha=0.5, colors=[colours[c] for c in present]
    )
    names = [
        f"{card.label_names[c]} {100 * record['class_fractions'][card.label_names[c]]:.1f}%" for c in present
    ]
    return {
        "mask": save_png(mask_rgb, stem.with_name(stem.name + "_mask.png")),
        "overlay": save_png(
            with_legend(overlay, names, [colours[c] for c in present]),
            stem.with_name(stem.name + "_overlay.png"),
        ),
    }

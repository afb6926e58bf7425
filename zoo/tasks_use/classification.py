"""Classification: the most probable classes of each image."""

from __future__ import annotations

import torch

from ..models.vit import VisionTransformer
from .base import ModelCard, TaskUse, register_use


@register_use
class ClassificationUse(TaskUse):
    """``zoo predict``: ``"top"``, the ``topk`` most probable classes ``{"label", "index",
    "prob"}``; nothing drawn. ``zoo export``: ``logits`` (N, classes). ``zoo explain``:
    Grad-CAM of the predicted class and the SE/CBAM gates; attention rollout for a ViT."""

    name = "classification"

    def results(self, out, j, card, size, seen, topk):
        return {"top": top_classes(out[j].float().softmax(0), card, topk)}

    def lines(self, record, threshold):
        return [f"  {t['prob']:7.2%}  {t['label']}" for t in record["top"]]

    def explanations(self, model):
        if isinstance(model, VisionTransformer):  # no convolutional feature map for Grad-CAM
            return ("rollout",)
        return ("gradcam", "attention")


def top_classes(probs: torch.Tensor, card: ModelCard, k: int) -> list[dict]:
    values, indices = probs.topk(min(k, len(probs)))
    return [
        {"label": card.label_names[i], "index": i, "prob": round(p, 4)}
        for p, i in zip(values.tolist(), indices.tolist())
    ]

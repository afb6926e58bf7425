"""Box detection: the boxes, classes and scores of the objects in each image.

The exported graph runs the whole post-processing, NMS included. torchvision's ``nms`` has
no translation for the dynamo ONNX exporter, so the graph calls the ``zoo::nms`` op below,
whose PyTorch implementation is torchvision's ``nms`` class by class and whose ONNX
translation is ``NonMaxSuppression`` (same inputs, same output).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torchvision
from torchvision.utils import draw_bounding_boxes

from ..models.fcos import FCOS, level_locations
from .base import DenseTaskUse, ModelCard, as_rgb, register_use, save_png, with_legend

DETECTION_OUTPUTS = ("boxes", "scores", "labels", "batch_index")


@register_use
class DetectionUse(DenseTaskUse):
    """``zoo predict``: ``"detections"`` ``{"label", "index", "score", "box": [x1, y1, x2,
    y2]}`` in the image's pixels, by decreasing score (every detection the model returns);
    draws those scoring at least ``--threshold``. ``zoo export`` (FCOS): the detections after
    NMS, flattened over the batch (``DETECTION_OUTPUTS``). ``zoo explain``: where the
    detector fires per pyramid level, and a deformable head's sampling points. eval.py:
    ``--save-boxes``, ``--save-sampling``."""

    name = "detection"
    outputs = DETECTION_OUTPUTS
    export_note = (
        "  detections after NMS in the graph, flattened over the batch: boxes (D, 4) xyxy pixels, "
        "scores (D,), labels (D,), batch_index (D,); by image, then by score"
    )
    eval_pictures = ("save_boxes", "save_sampling")

    def results(self, out, j, card, size, seen, topk):
        return {"detections": detections(out[j], card, size, seen)}

    def lines(self, record, threshold):
        shown = [d for d in record["detections"] if d["score"] >= threshold]
        lines = [f"  {len(shown)} detections scoring >= {threshold} (of {len(record['detections'])})"]
        for d in shown:
            x1, y1, x2, y2 = d["box"]
            lines.append(f"  {d['score']:.3f}  {d['label']:<12} [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]")
        return lines

    def save(self, record, card, stem, threshold):
        return {"pictures": save_detections(record, card, stem, threshold), "threshold": threshold}

    def exportable(self, model):
        return FCOSDetections(model).eval() if isinstance(model, FCOS) else None

    def onnx_translations(self):
        return {torch.ops.zoo.nms.default: _nms_onnx}

    def as_outputs(self, out):
        return detections_as_outputs(out)

    def compare(self, expected, got):
        """Detection outputs must hold the same detections: a different count, image or label
        is an infinite difference, since boxes and scores are only comparable one to one."""
        boxes, scores, labels, image = expected
        if len(got[0]) != len(boxes):
            return float("inf"), f"{len(got[0])} detections from onnxruntime, {len(boxes)} from PyTorch"
        if not (torch.equal(got[2].long(), labels.long()) and torch.equal(got[3].long(), image.long())):
            return float("inf"), "labels or image indices differ from PyTorch's"
        if len(boxes) == 0:
            return 0.0, "no detections in the check image(s)"
        diff = max(float((got[0] - boxes).abs().max()), float((got[1] - scores).abs().max()))
        return diff, f"{len(boxes)} detections, the same labels"

    def explanations(self, model):
        return ("scores", "sampling")


def detections(pred: dict, card: ModelCard, original: tuple[int, int], seen: tuple[int, int]) -> list[dict]:
    """The model's detections with boxes scaled from the size it saw back to the image's."""
    sy, sx = original[0] / seen[0], original[1] / seen[1]
    boxes = pred["boxes"].float().cpu() * torch.tensor([sx, sy, sx, sy])
    return [
        {"label": card.label_names[c], "index": c, "score": round(s, 4), "box": [round(v, 1) for v in b]}
        for b, s, c in zip(boxes.tolist(), pred["scores"].tolist(), pred["labels"].tolist())
    ]


def save_detections(record: dict, card: ModelCard, stem: Path, threshold: float) -> dict[str, str]:
    """``<stem>_boxes.png``: the detections scoring at least ``threshold``, one colour per class,
    each box labelled with its score, and a legend of the classes."""
    colours = card.colours()
    shown = [d for d in record["detections"] if d["score"] >= threshold]
    image = as_rgb(record["image"])
    if shown:
        image = draw_bounding_boxes(
            image,
            torch.tensor([d["box"] for d in shown]),
            labels=[f"{d['score']:.2f}" for d in shown],
            colors=[colours[d["index"]] for d in shown],
            width=2,
        )
    counts = [sum(d["index"] == c for d in shown) for c in range(len(card.label_names))]
    names = [f"{n} ({k})" for n, k in zip(card.label_names, counts)]
    return {"boxes": save_png(with_legend(image, names, colours), stem.with_name(stem.name + "_boxes.png"))}


# -- the exported graph ----------------------------------------------------------------------------


@torch.library.custom_op("zoo::nms", mutates_args=())
def nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    max_per_class: int,
    iou_threshold: float,
    score_threshold: float,
) -> torch.Tensor:
    """ONNX ``NonMaxSuppression`` (``center_point_box=0``) in PyTorch.

    Args:
        boxes: (B, K, 4) xyxy.
        scores: (B, C, K); a box takes part in class c's NMS when its score is above
            ``score_threshold``.
    Returns:
        (S, 3) int64 rows (batch, class, box index) of the kept boxes, by batch, then class,
        then decreasing score; at most ``max_per_class`` per batch and class.
    """
    selected = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            candidates = (scores[b, c] > score_threshold).nonzero()[:, 0]
            keep = torchvision.ops.nms(boxes[b, candidates], scores[b, c, candidates], iou_threshold)
            keep = candidates[keep[:max_per_class]]
            selected.append(torch.stack([torch.full_like(keep, b), torch.full_like(keep, c), keep], dim=1))
    return torch.cat(selected) if selected else boxes.new_zeros((0, 3), dtype=torch.int64)


@nms.register_fake
def _(boxes, scores, max_per_class, iou_threshold, score_threshold):
    count = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((count, 3), dtype=torch.int64)


def _nms_onnx(boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):
    from onnxscript import opset18 as op  # lazy: the optional `export` extra installs onnxscript

    return op.NonMaxSuppression(
        boxes,
        scores,
        op.Constant(value_ints=[max_per_class]),
        op.Constant(value_floats=[iou_threshold]),
        op.Constant(value_floats=[score_threshold]),
        center_point_box=0,
    )


class FCOSDetections(nn.Module):
    """FCOS from pixels to detections, as ``FCOS.postprocess`` computes them but batched, with
    fixed shapes up to the NMS: per level, class probabilities at or below ``score_thresh``
    are masked (score -1), the top ``topk_per_level`` (location, class) pairs are kept, their
    boxes decoded and clipped; NMS runs per image and class; each image keeps its
    ``max_detections`` best."""

    def __init__(self, model: FCOS):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        m = self.model
        m.check_input(images)
        height, width = images.shape[-2:]
        cls, box, ctr = m.head(m.forward_intermediates(images))
        level_boxes, level_scores, level_labels = [], [], []
        for c, b, t, stride in zip(cls, box, ctr, m.strides):
            num_classes, h, w = c.shape[1:]
            prob = c.float().sigmoid().flatten(2)  # (N, C, L)
            score = (prob * t.float().sigmoid().flatten(2)).sqrt()
            score = torch.where(prob > m.score_thresh, score, torch.full_like(score, -1.0))
            k = min(m.topk_per_level, num_classes * h * w)
            top, index = score.flatten(1).topk(k)  # index = class * L + location
            label, loc = index // (h * w), index % (h * w)
            dist = b.float().flatten(2).transpose(1, 2)  # (N, L, 4)
            dist = dist.gather(1, loc[..., None].expand(-1, -1, 4))
            points = level_locations(h, w, stride, images.device)[loc]  # (N, k, 2)
            xyxy = torch.cat([points - dist[..., :2], points + dist[..., 2:]], dim=-1)
            xyxy = torch.stack(
                [
                    xyxy[..., 0].clamp(0, width),
                    xyxy[..., 1].clamp(0, height),
                    xyxy[..., 2].clamp(0, width),
                    xyxy[..., 3].clamp(0, height),
                ],
                dim=-1,
            )
            level_boxes.append(xyxy)
            level_scores.append(top)
            level_labels.append(label)
        boxes, scores, labels = (torch.cat(t, dim=1) for t in (level_boxes, level_scores, level_labels))
        classes = torch.arange(cls[0].shape[1], device=images.device)
        per_class = torch.where(labels[:, None, :] == classes[None, :, None], scores[:, None, :], -1.0)
        kept = torch.ops.zoo.nms(boxes, per_class, m.max_detections, m.nms_thresh, 0.0)
        image, det = kept[:, 0], kept[:, 2]
        det_boxes, det_scores, det_labels = boxes[image, det], scores[image, det], labels[image, det]
        # By image, then by decreasing score (scores are in (0, 1]); then each image's best.
        order = (image.double() * 2 - det_scores.double()).argsort()
        image, det_boxes, det_scores, det_labels = (
            t[order] for t in (image, det_boxes, det_scores, det_labels)
        )
        same = image[:, None] == torch.arange(images.shape[0], device=images.device)[None]
        rank = (same.long().cumsum(0) * same.long()).sum(1) - 1  # position within its image
        keep = rank < m.max_detections
        return det_boxes[keep], det_scores[keep], det_labels[keep], image[keep]


def detections_as_outputs(dets: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """PyTorch's per-image detections in the exported layout (boxes, scores, labels, batch_index)."""
    return [
        torch.cat([d["boxes"].float() for d in dets]),
        torch.cat([d["scores"].float() for d in dets]),
        torch.cat([d["labels"] for d in dets]),
        torch.cat([torch.full((len(d["boxes"]),), i, dtype=torch.long) for i, d in enumerate(dets)]),
    ]

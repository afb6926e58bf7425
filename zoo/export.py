"""Export any registered model to ONNX, and check the file against PyTorch in onnxruntime.

    python -m zoo export resnet20.fashion_mnist --format onnx --out resnet20.onnx

The graph comes from ``torch.onnx.export(..., dynamo=True)`` at opset 18 with a dynamic batch
dimension (the height and width are those of the example input: ``input_size``, the weights'
by default). Its outputs, by task:

- classification: ``logits`` (N, classes);
- segmentation: ``logits`` (N, classes, H, W), at the input size;
- detection (FCOS): the detections after NMS, as in PyTorch's ``model(images)``, flattened
  over the batch: ``boxes`` (D, 4) xyxy in input pixels, ``scores`` (D,), ``labels`` (D,) and
  ``batch_index`` (D,), the image each detection belongs to; sorted by image, then by
  decreasing score, at most ``model.max_detections`` per image. The score threshold, the
  top-k per level and the per-class NMS (ONNX ``NonMaxSuppression``) all run in the graph.

Two things make the export possible, and both stay inside this module:

- torchvision's ``deform_conv2d`` has no ONNX translation (torchvision #2066, pytorch
  #68910); the exported copy of the model sets every ``DeformConv2d`` to the project's own
  ``impl="grid_sample"`` (``F.grid_sample`` + matmul, ONNX ``GridSample``), the same operator.
- torchvision's ``nms`` has none for the dynamo exporter either; the graph calls the
  ``zoo::nms`` op below, whose PyTorch implementation is torchvision's ``nms`` class by class
  and whose ONNX translation is ``NonMaxSuppression`` (same inputs, same output).

The example batch has two images, not one: ``torch.export`` specialises dimensions of size 1,
which would bake a batch of one into the graph's reshapes.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torchvision

from .layers import DeformConv2d
from .models.fcos import FCOS, level_locations

OPSET = 18
# Largest |ONNX - PyTorch| allowed by default, for logits and for detection boxes (pixels) and
# scores. float32 kernels differ in summation order: resnet20's logits differ by ~1e-5, the DCN
# detector's boxes by ~1e-4 px at 480x640.
TOLERANCE = 1e-3
DETECTION_OUTPUTS = ("boxes", "scores", "labels", "batch_index")


class ExportError(RuntimeError):
    """A model that cannot be exported, or an ONNX file that does not agree with PyTorch."""


# -- NMS as one op with an ONNX translation -----------------------------------------------------


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


# -- what is exported, per task ----------------------------------------------------------------


class SegmentationLogits(nn.Module):
    """A segmentation model's ``out`` logits (at the input size), without the dict."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


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


def exportable(model: nn.Module, task: str) -> tuple[nn.Module, tuple[str, ...]]:
    """A copy of ``model`` in the form that is exported, and the names of its outputs."""
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if isinstance(m, DeformConv2d):
            m.impl = "grid_sample"
    if task == "classification":
        return model, ("logits",)
    if task == "segmentation":
        return SegmentationLogits(model).eval(), ("logits",)
    if isinstance(model, FCOS):
        return FCOSDetections(model).eval(), DETECTION_OUTPUTS
    raise ExportError(f"no ONNX export for {type(model).__name__} ({task})")


def detections_as_outputs(dets: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """PyTorch's per-image detections in the exported layout (boxes, scores, labels, batch_index)."""
    return [
        torch.cat([d["boxes"].float() for d in dets]),
        torch.cat([d["scores"].float() for d in dets]),
        torch.cat([d["labels"] for d in dets]),
        torch.cat([torch.full((len(d["boxes"]),), i, dtype=torch.long) for i, d in enumerate(dets)]),
    ]


# -- export and check ----------------------------------------------------------------------------


@dataclasses.dataclass
class ExportReport:
    path: Path
    outputs: tuple[str, ...]
    input_shape: tuple[int, ...]
    max_abs_diff: float
    tolerance: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def export_onnx(model: nn.Module, task: str, example: torch.Tensor, path: str | Path) -> tuple[str, ...]:
    """Write ``model`` as ONNX to ``path`` (batch dimension dynamic); return its output names.

    ``example`` is a batch of at least two images of the size the graph is built for.
    """
    if example.shape[0] < 2:
        raise ValueError("export needs an example batch of at least 2 (torch.export specialises size-1 dims)")
    module, outputs = exportable(model, task)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=["images"],
            output_names=list(outputs),
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            custom_translation_table={torch.ops.zoo.nms.default: _nms_onnx},
            external_data=False,
            verbose=False,
        )
    program.save(str(path))
    return outputs


def onnx_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session for the file (``threads``: intra-op threads, default onnxruntime's)."""
    import onnxruntime as ort  # lazy: the optional `export` extra installs onnxruntime

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnxruntime(path: str | Path, images: torch.Tensor, session=None) -> list[np.ndarray]:
    """Run the ONNX file (or an open ``session`` of it) on ``images`` (N, C, H, W)."""
    session = session or onnx_session(path)
    return session.run(None, {session.get_inputs()[0].name: images.numpy()})


@torch.no_grad()
def reference_outputs(model: nn.Module, task: str, images: torch.Tensor) -> list[torch.Tensor]:
    """What PyTorch's own model gives for ``images``, in the exported layout."""
    out = model.eval()(images)
    if task == "classification":
        return [out]
    if task == "segmentation":
        return [out["out"]]
    return detections_as_outputs(out)


def compare(task: str, expected: list[torch.Tensor], got: list[np.ndarray]) -> tuple[float, str]:
    """The largest |difference| between PyTorch's and onnxruntime's outputs, and a note.

    Detection outputs must hold the same detections: a different count, image or label is an
    infinite difference, since boxes and scores are only comparable one to one.
    """
    got = [torch.from_numpy(np.asarray(g)) for g in got]
    if task != "detection":
        return float((expected[0].float() - got[0].float()).abs().max()), ""
    boxes, scores, labels, image = expected
    if len(got[0]) != len(boxes):
        return float("inf"), f"{len(got[0])} detections from onnxruntime, {len(boxes)} from PyTorch"
    if not (torch.equal(got[2].long(), labels.long()) and torch.equal(got[3].long(), image.long())):
        return float("inf"), "labels or image indices differ from PyTorch's"
    if len(boxes) == 0:
        return 0.0, "no detections in the check image(s)"
    diff = max(float((got[0] - boxes).abs().max()), float((got[1] - scores).abs().max()))
    return diff, f"{len(boxes)} detections, the same labels"


def check_onnx(
    model: nn.Module, task: str, path: str | Path, images: torch.Tensor, tolerance: float = TOLERANCE
) -> ExportReport:
    """Run ``path`` in onnxruntime on ``images`` and compare with ``model`` in PyTorch."""
    expected = reference_outputs(model, task, images)
    diff, detail = compare(task, expected, run_onnxruntime(path, images))
    outputs = DETECTION_OUTPUTS if task == "detection" else ("logits",)
    return ExportReport(Path(path), outputs, tuple(images.shape), diff, tolerance, detail)

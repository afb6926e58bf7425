"""FCOS (Tian et al., "FCOS: Fully Convolutional One-Stage Object Detection", ICCV 2019).

An anchor-free one-stage detector: every location of every pyramid level predicts class
scores, its distances (l, t, r, b) to the four sides of a box, and a "centerness" that
down-weights boxes predicted far from an object's centre.

- Backbone: any registered model with ``features_only``; here C3-C5 of resnet18 (strides
  8, 16, 32). ``backbone_deform_stages=(4,)`` makes the backbone's last stage (conv5) DCNv2,
  as Zhu et al. place them (``(2, 3, 4)``: conv3-conv5); see ``zoo.models.resnet``.
- FPN: P3-P5 (``extra_levels=2`` adds P6/P7 as in the paper). BCCD's cells are 20-340 px
  on 640x480 images, so P3-P5 cover them; the extra levels only cost time.
- Head: one tower for classification and one for boxes, shared across levels, of
  ``num_convs`` 3x3 convs + GroupNorm(32) + ReLU. ``head_conv="deform"`` makes the last
  ``deform_convs`` convs of each tower DCNv2 (``zoo.layers.DeformConv2d``, zero-initialised
  offsets: training starts from the plain head). The default, 1, is the FCOS authors' own
  deformable-head option (the last tower conv); ``deform_convs=num_convs`` deforms them all.
  Centerness is predicted from the box tower (the paper's later variant).
- Boxes: distances are ``exp(s_level * x) * stride``, one learnable ``s`` per level.
- Targets: a location is positive for a box when it lies inside the box, within
  ``center_radius`` strides of its centre (centre sampling), and the largest of its four
  distances falls in the level's range; among several boxes the smallest one wins.
  The default ranges [0, 40], [40, 80], [80, inf] (P3-P5) follow BCCD's sizes: platelets
  (~40 px) land on P3, red cells (~110 px) on P4, white cells (~200 px) on P5.
- Losses: sigmoid focal loss, GIoU loss and centerness BCE, each summed over locations
  and divided by the number of positives (at least 1).

Locations sit at ``(i * stride + stride // 2)`` pixels, as in the paper.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import batched_nms, generalized_box_iou_loss, sigmoid_focal_loss

from .._registry import register_model
from ..layers import DeformConv2d, create_norm
from ._base import ZooModel, create_backbone

# -- building blocks ----------------------------------------------------------------------


class FPN(nn.Module):
    """Feature pyramid (Lin et al. 2017): 1x1 laterals, top-down nearest upsampling, 3x3 smoothing;
    ``extra_levels`` more maps by stride-2 3x3 convs on the coarsest output (FCOS's P6/P7)."""

    def __init__(self, in_channels: list[int], out_channels: int, extra_levels: int = 0):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.extra = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1) for _ in range(extra_levels)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        merged = self.lateral[-1](features[-1])
        outs = [self.smooth[-1](merged)]
        for i in range(len(features) - 2, -1, -1):
            lateral = self.lateral[i](features[i])
            merged = lateral + F.interpolate(merged, size=lateral.shape[-2:], mode="nearest")
            outs.insert(0, self.smooth[i](merged))
        for j, conv in enumerate(self.extra):
            # The paper's P7 takes a ReLU of P6 first.
            outs.append(conv(outs[-1] if j == 0 else F.relu(outs[-1])))
        return outs


def _tower_conv(deform: bool, channels: int) -> nn.Module:
    if deform:
        return DeformConv2d(channels, channels, 3, padding=1)
    return nn.Conv2d(channels, channels, 3, padding=1)


def deform_flags(head_conv: str, num_convs: int, deform_convs: int) -> list[bool]:
    """Which tower convs are deformable: the last ``deform_convs`` when head_conv is 'deform'."""
    if head_conv not in ("conv", "deform"):
        raise ValueError(f"head_conv must be 'conv' or 'deform', got {head_conv!r}")
    if head_conv == "conv":
        return [False] * num_convs
    if not 1 <= deform_convs <= num_convs:
        raise ValueError(f"deform_convs must be in 1..num_convs={num_convs}, got {deform_convs}")
    return [i >= num_convs - deform_convs for i in range(num_convs)]


class Tower(nn.Module):
    """3x3 convs (plain or deformable, per ``deform``) + GroupNorm (32 groups where the channels
    allow) + ReLU, shared by every level."""

    def __init__(self, channels: int, deform: list[bool]):
        super().__init__()
        self.convs = nn.ModuleList(_tower_conv(d, channels) for d in deform)
        self.norms = nn.ModuleList(create_norm("groupnorm", channels) for _ in deform)

    def forward(self, x: torch.Tensor, num_layers: int | None = None) -> torch.Tensor:
        """The whole tower, or its first ``num_layers`` layers (the input that conv ``num_layers`` sees)."""
        for conv, norm in list(zip(self.convs, self.norms))[:num_layers]:
            x = F.relu(norm(conv(x)))
        return x


class FCOSHead(nn.Module):
    """Class logits, (l, t, r, b) distances in pixels and centerness logits for every location."""

    def __init__(self, channels: int, num_classes: int, deform: list[bool], strides: list[int]):
        super().__init__()
        self.channels, self.strides = channels, list(strides)
        self.cls_tower = Tower(channels, deform)
        self.box_tower = Tower(channels, deform)
        self.cls_logits = make_cls_logits(channels, num_classes)
        self.box_pred = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(strides)))  # one box scale per level
        for m in [*self.cls_tower.convs, *self.box_tower.convs, self.box_pred, self.centerness]:
            nn.init.normal_(m.weight, std=0.01)  # DeformConv2d's offset predictor stays at zero
            nn.init.zeros_(m.bias)

    def forward(self, features: list[torch.Tensor]):
        cls, box, ctr = [], [], []
        for level, (x, stride) in enumerate(zip(features, self.strides)):
            c, b = self.cls_tower(x), self.box_tower(x)
            if self.cls_logits is not None:
                cls.append(self.cls_logits(c))
            # exp keeps distances positive; the clamp keeps an untrained head from overflowing.
            box.append(torch.exp((self.scales[level] * self.box_pred(b)).float().clamp(max=10.0)) * stride)
            ctr.append(self.centerness(b))
        return cls, box, ctr


def make_cls_logits(channels: int, num_classes: int) -> nn.Conv2d | None:
    """The final class conv, its bias set so every class starts at probability 0.01 (focal loss prior)."""
    if num_classes <= 0:
        return None
    conv = nn.Conv2d(channels, num_classes, 3, padding=1)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.constant_(conv.bias, -math.log((1 - 0.01) / 0.01))
    return conv


# -- locations and targets ------------------------------------------------------------------


def level_locations(height: int, width: int, stride: int, device=None) -> torch.Tensor:
    """(H*W, 2) pixel (x, y) of each location of a level, row-major."""
    ys = torch.arange(height, device=device, dtype=torch.float32) * stride + stride // 2
    xs = torch.arange(width, device=device, dtype=torch.float32) * stride + stride // 2
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)


def ltrb_distances(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(P, G, 4) distances from each point to the left, top, right and bottom side of each box."""
    x, y = points[:, 0, None], points[:, 1, None]
    return torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], dim=-1)


def assign_locations(
    points: torch.Tensor,
    strides: torch.Tensor,
    ranges: torch.Tensor,
    boxes: torch.Tensor,
    center_radius: float | None = 1.5,
) -> torch.Tensor:
    """Index of the box each location regresses, or -1 for background.

    Args:
        points: (P, 2) location (x, y) in pixels, all levels concatenated.
        strides: (P,) the stride of each location's level.
        ranges: (P, 2) the [low, high] of ``max(l, t, r, b)`` its level takes.
        boxes: (G, 4) ground-truth xyxy.
        center_radius: positives only within this many strides of a box centre (None: anywhere inside).
    """
    if len(boxes) == 0:
        return torch.full((len(points),), -1, dtype=torch.long, device=points.device)
    ltrb = ltrb_distances(points, boxes)
    candidate = ltrb.min(dim=-1).values > 0
    if center_radius is not None:
        centers = (boxes[:, :2] + boxes[:, 2:]) / 2
        radius = (strides * center_radius)[:, None]
        near = (points[:, None, :] - centers[None]).abs().max(dim=-1).values < radius
        candidate &= near
    largest = ltrb.max(dim=-1).values
    candidate &= (largest >= ranges[:, :1]) & (largest <= ranges[:, 1:])
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area = torch.where(candidate, area[None], torch.full_like(ltrb[..., 0], math.inf))
    smallest, index = area.min(dim=1)
    return torch.where(torch.isfinite(smallest), index, torch.full_like(index, -1))


def centerness_target(ltrb: torch.Tensor) -> torch.Tensor:
    left_right, top_bottom = ltrb[:, [0, 2]], ltrb[:, [1, 3]]
    ratio = (left_right.min(-1).values / left_right.max(-1).values) * (
        top_bottom.min(-1).values / top_bottom.max(-1).values
    )
    return ratio.clamp(min=0).sqrt()


# -- the model ---------------------------------------------------------------------------------


class FCOS(ZooModel):
    classifier_name = "head.cls_logits"

    def __init__(
        self,
        backbone: str = "resnet18",
        num_classes: int = 3,
        in_chans: int = 3,
        fpn_channels: int = 128,
        extra_levels: int = 0,
        num_convs: int = 2,
        head_conv: str = "conv",
        deform_convs: int = 1,
        size_bounds: tuple[float, ...] | None = None,
        center_radius: float | None = 1.5,
        score_thresh: float = 0.05,
        topk_per_level: int = 1000,
        nms_thresh: float = 0.6,
        max_detections: int = 100,
        backbone_norm: str = "batchnorm",
        backbone_deform_stages: tuple[int, ...] = (),
    ):
        """
        Args:
            backbone: a registered model with feature_info; its last three stages feed the FPN.
            backbone_deform_stages: the backbone stages whose 3x3 convs are DCNv2 (its
                ``deform_stages``; () leaves the backbone plain).
            size_bounds: the ``max(l, t, r, b)`` boundaries between levels (one fewer than the
                levels); default (40, 80) for P3-P5, (40, 80, 160, 320) with P6/P7.
            center_radius: centre sampling radius in strides (None: every location inside a box).
        """
        super().__init__()
        self.num_classes, self.in_chans, self.head_conv = num_classes, in_chans, head_conv
        # The backbone's classification weights must match these arguments; DCN convs keep the
        # plain convs' weights and add only their offset predictors (zoo.models.resnet).
        self.backbone_arch, self.backbone_args = backbone, dict(norm=backbone_norm)
        deform = {"deform_stages": tuple(backbone_deform_stages)} if backbone_deform_stages else {}
        self.backbone = create_backbone(
            backbone, (-3, -2, -1), in_chans=in_chans, norm=backbone_norm, **deform
        )
        self.first_conv_name = f"backbone.{self.backbone.first_conv_name}"
        in_channels = [f["num_chs"] for f in self.backbone.feature_info]
        strides = [f["reduction"] for f in self.backbone.feature_info]
        strides += [strides[-1] * 2 ** (i + 1) for i in range(extra_levels)]
        self.strides = strides
        self.fpn = FPN(in_channels, fpn_channels, extra_levels)
        self.head = FCOSHead(
            fpn_channels, num_classes, deform_flags(head_conv, num_convs, deform_convs), strides
        )
        if size_bounds is None:
            size_bounds = (40, 80, 160, 320)[: len(strides) - 1]
        if len(size_bounds) != len(strides) - 1:
            raise ValueError(f"size_bounds needs {len(strides) - 1} values for {len(strides)} levels")
        edges = [0.0, *map(float, size_bounds), math.inf]
        self.level_ranges = list(zip(edges[:-1], edges[1:]))
        self.center_radius = center_radius
        self.score_thresh, self.topk_per_level = score_thresh, topk_per_level
        self.nms_thresh, self.max_detections = nms_thresh, max_detections
        self.feature_info = [
            dict(num_chs=fpn_channels, reduction=s, module=f"fpn.p{int(math.log2(s))}") for s in strides
        ]

    # -- the ZooModel face ---------------------------------------------------------------------
    def reset_classifier(self, num_classes: int) -> None:
        """A new class conv (prior-initialised); 0 removes it (features_only keeps backbone + FPN)."""
        self.num_classes = num_classes
        self.head.cls_logits = make_cls_logits(self.head.channels, num_classes)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The FPN maps, finest first."""
        return self.fpn(self.backbone(x))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_intermediates(x)

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None):
        """Eval: one dict of ``boxes`` (xyxy px), ``scores``, ``labels`` per image.
        Train: the loss dict ``loss_cls``, ``loss_box``, ``loss_ctr`` (needs ``targets``)."""
        self.check_input(images)
        features = self.forward_intermediates(images)
        if self.features_only:
            return [features[i] for i in self.out_indices]
        cls, box, ctr = self.head(features)
        points, strides, ranges = self.locations(features)
        cls, box, ctr = (_flatten_levels(t) for t in (cls, box, ctr))
        if self.training:
            if targets is None:
                raise ValueError("FCOS in train mode needs targets (a list of dicts with boxes and labels)")
            return self.losses(cls, box, ctr.squeeze(-1), points, strides, ranges, targets)
        sizes = [f.shape[-2] * f.shape[-1] for f in features]
        return self.postprocess(cls, box, ctr.squeeze(-1), points, sizes, images.shape[-2:])

    def locations(self, features: list[torch.Tensor]):
        """Every location's (x, y), its level's stride and its level's regression range."""
        points, strides, ranges = [], [], []
        for f, stride, (lo, hi) in zip(features, self.strides, self.level_ranges):
            p = level_locations(f.shape[-2], f.shape[-1], stride, f.device)
            points.append(p)
            strides.append(torch.full((len(p),), float(stride), device=f.device))
            ranges.append(torch.tensor([lo, hi], device=f.device).expand(len(p), 2))
        return torch.cat(points), torch.cat(strides), torch.cat(ranges)

    # -- training --------------------------------------------------------------------------------
    def losses(self, cls, box, ctr, points, strides, ranges, targets) -> dict[str, torch.Tensor]:
        cls, ctr = cls.float(), ctr.float()  # losses in float32, also under bf16 autocast
        cls_target = torch.zeros_like(cls)
        pos_pred, pos_gt, pos_ctr, pos_ctr_target = [], [], [], []
        for i, t in enumerate(targets):
            gt_boxes = t["boxes"].to(points.device, torch.float32)
            matched = assign_locations(points, strides, ranges, gt_boxes, self.center_radius)
            pos = matched >= 0
            cls_target[i, pos, t["labels"].to(points.device)[matched[pos]]] = 1.0
            gt = gt_boxes[matched[pos]]
            p = points[pos]
            d = box[i, pos]
            pos_pred.append(torch.cat([p - d[:, :2], p + d[:, 2:]], dim=1))
            pos_gt.append(gt)
            pos_ctr.append(ctr[i, pos])
            pos_ctr_target.append(centerness_target(torch.cat([p - gt[:, :2], gt[:, 2:] - p], dim=1)))
        pred, gt = torch.cat(pos_pred), torch.cat(pos_gt)
        num_pos = max(float(len(gt)), 1.0)
        loss_cls = sigmoid_focal_loss(cls, cls_target, alpha=0.25, gamma=2.0, reduction="sum") / num_pos
        loss_box = generalized_box_iou_loss(pred, gt, reduction="sum") / num_pos
        loss_ctr = (
            F.binary_cross_entropy_with_logits(torch.cat(pos_ctr), torch.cat(pos_ctr_target), reduction="sum")
            / num_pos
        )
        return {"loss_cls": loss_cls, "loss_box": loss_box, "loss_ctr": loss_ctr}

    # -- inference ---------------------------------------------------------------------------------
    @torch.no_grad()
    def postprocess(self, cls, box, ctr, points, level_sizes, image_size) -> list[dict[str, torch.Tensor]]:
        height, width = image_size
        results = []
        for i in range(len(cls)):
            all_boxes, all_scores, all_labels = [], [], []
            start = 0
            for size in level_sizes:
                sl = slice(start, start + size)
                start += size
                prob = cls[i, sl].float().sigmoid()
                keep = prob > self.score_thresh  # thresholded on the class score, as FCOS does
                score = (prob * ctr[i, sl].float().sigmoid()[:, None]).sqrt()[keep]
                loc, label = keep.nonzero(as_tuple=True)
                if len(score) > self.topk_per_level:
                    score, top = score.topk(self.topk_per_level)
                    loc, label = loc[top], label[top]
                p, d = points[sl][loc], box[i, sl][loc].float()
                boxes = torch.cat([p - d[:, :2], p + d[:, 2:]], dim=1)
                boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
                boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
                all_boxes.append(boxes)
                all_scores.append(score)
                all_labels.append(label)
            boxes, scores, labels = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.max_detections]
            results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return results

    # -- what the deformable head looks at -----------------------------------------------------------
    def level_for_box(self, box: torch.Tensor) -> tuple[int, int, int]:
        """(level, row, column) of the location at a box's centre, on the level its size maps to."""
        half = float(max(box[2] - box[0], box[3] - box[1])) / 2
        level = next(i for i, (lo, hi) in enumerate(self.level_ranges) if lo <= half <= hi)
        stride = self.strides[level]
        cx, cy = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2
        return level, int(cy // stride), int(cx // stride)

    @torch.no_grad()
    def sampling_locations(
        self, image: torch.Tensor, level: int, row: int, col: int
    ) -> dict[str, torch.Tensor]:
        """Where the first deformable conv of the class tower samples for one location.

        Returns ``grid`` (K, 2) the regular 3x3 taps and ``deformed`` (K, 2) the taps after the
        learned offsets, both (x, y) in input pixels, and ``mask`` (K,) the DCNv2 modulation.
        """
        tower = self.head.cls_tower
        first = next((i for i, c in enumerate(tower.convs) if isinstance(c, DeformConv2d)), None)
        if first is None:
            raise ValueError(
                f"sampling_locations needs head_conv='deform', this model has {self.head_conv!r}"
            )
        conv = tower.convs[first]
        feature = self.forward_intermediates(image[None] if image.ndim == 3 else image[:1])[level].float()
        feature = tower(feature, num_layers=first)
        offset, mask = conv.offsets_and_mask(feature)
        kh, kw = conv.kernel_size
        dy, dx = offset[0, 0::2, row, col], offset[0, 1::2, row, col]  # (dy, dx) pairs per tap
        ty, tx = torch.meshgrid(torch.arange(kh), torch.arange(kw), indexing="ij")
        grid_y = row * conv.stride[0] - conv.padding[0] + ty.reshape(-1).float() * conv.dilation[0]
        grid_x = col * conv.stride[1] - conv.padding[1] + tx.reshape(-1).float() * conv.dilation[1]
        stride = self.strides[level]

        def to_pixels(x, y):
            return torch.stack([x * stride + stride // 2, y * stride + stride // 2], dim=1)

        return {
            "grid": to_pixels(grid_x, grid_y),
            "deformed": to_pixels(grid_x + dx, grid_y + dy),
            "mask": mask[0, :, row, col],
        }


def _flatten_levels(maps: list[torch.Tensor]) -> torch.Tensor:
    """[(N, C, H, W) per level] -> (N, sum H*W, C), row-major within each level."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, m.shape[1]) for m in maps], dim=1)


# BCCD: 640x480 images, 3 classes (RBC, WBC, Platelets).
@register_model(FCOS, task="detection", input_size=(3, 480, 640))
def fcos_resnet18():
    return dict(backbone="resnet18", head_conv="conv")


@register_model(FCOS, task="detection", input_size=(3, 480, 640))
def fcos_dcn_resnet18():
    return dict(backbone="resnet18", head_conv="deform")


@register_model(FCOS, task="detection", input_size=(3, 480, 640))
def fcos_dcnbackbone_resnet18():
    # The plain head on a backbone whose conv5 (layer4) 3x3 convs are DCNv2: the DCNv2 paper's
    # placement, against fcos_dcn_resnet18's deformable head.
    return dict(backbone="resnet18", head_conv="conv", backbone_deform_stages=(4,))

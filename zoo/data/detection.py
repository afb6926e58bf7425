"""Transforms and batches for any box-detection dataset.

Samples are ``(uint8 image (3, H, W), {"boxes": xyxy float32 px, "labels": int64})``; the
dataset's own numbers (mean/std, image size) come from its ``DatasetInfo``.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2


def _to_tv(sample):
    image, target = sample
    boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=tuple(image.shape[-2:]))
    return tv_tensors.Image(image), {"boxes": boxes, "labels": target["labels"]}


def _to_plain(sample):
    image, target = sample
    return image.as_subclass(torch.Tensor), {
        "boxes": target["boxes"].as_subclass(torch.Tensor).float(),
        "labels": target["labels"],
    }


class DetectionTransform:
    """Joint image + box transform on a ``(uint8 image, {"boxes", "labels"})`` sample.

    Training: the flips asked for (horizontal, then vertical), a random resize of the short
    side (``base_short_side`` times a factor in ``scale_range``), a random crop of ``crop_size``
    (padded with the mean colour where the image is smaller), boxes clipped to the crop and
    dropped when less than 4 px wide or high; then normalised. Eval: normalise only.
    """

    def __init__(
        self,
        mean,
        std,
        train: bool = False,
        crop_size: tuple[int, int] = (480, 640),
        scale_range: tuple[float, float] = (0.75, 1.25),
        hflip: bool = True,
        vflip: bool = False,
        base_short_side: int = 480,
    ):
        steps = []
        if train:
            steps += [v2.RandomHorizontalFlip()] if hflip else []
            steps += [v2.RandomVerticalFlip()] if vflip else []
            lo, hi = (round(base_short_side * s) for s in scale_range)
            fill = tuple(round(255 * m) for m in mean)
            steps += [
                v2.RandomResize(lo, hi + 1),
                v2.RandomCrop(
                    tuple(crop_size), pad_if_needed=True, fill={tv_tensors.Image: fill, "others": 0}
                ),
                v2.ClampBoundingBoxes(),
                v2.SanitizeBoundingBoxes(min_size=4),
            ]
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
        self.transform = v2.Compose(steps)

    def __call__(self, sample):
        return _to_plain(self.transform(_to_tv(sample)))


def collate_detection(samples) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Images of one size stacked to (N, 3, H, W); targets kept as a list of dicts."""
    images, targets = zip(*samples)
    return torch.stack(images), list(targets)

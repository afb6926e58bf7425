"""Transforms and batches for any segmentation dataset of ``(image, mask)`` samples.

Samples are ``(tv_tensors.Image uint8 (3, H, W), tv_tensors.Mask uint8 (H, W))`` pairs, which
torchvision's v2 transforms move together. The dataset's own numbers (mean/std, image size,
ignore index) come from its ``DatasetInfo``.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2


def to_normalized_float(mean, std) -> list[v2.Transform]:
    # Only the image becomes float and is normalised; the mask keeps its integer labels.
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(mean, std),
    ]


def train_transform(
    crop_size: tuple[int, int],
    scale_range: tuple[float, float],
    mean,
    std,
    base_size: tuple[int, int],
    ignore_index: int,
    hflip: bool = True,
) -> v2.Compose:
    """Joint augmentation of (image, mask): random scale (the short side of ``base_size`` times a
    factor in ``scale_range``; masks are resized with nearest neighbours, which v2 does for
    ``Mask``), random crop padded where the scaled image is smaller (image 0, mask
    ``ignore_index``), horizontal flip, then the image to normalised float."""
    short_side = min(base_size)
    # v2.RandomResize draws the new short side uniformly in [min_size, max_size).
    min_size, max_size = round(short_side * scale_range[0]), round(short_side * scale_range[1]) + 1
    steps = [
        v2.RandomResize(min_size, max_size, antialias=True),
        v2.RandomCrop(
            tuple(crop_size), pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}
        ),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + to_normalized_float(mean, std))


def eval_transform(mean, std) -> v2.Compose:
    """Full-size images, no augmentation."""
    return v2.Compose(to_normalized_float(mean, std))


def collate(samples) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, H, W) float and masks (N, H, W) int64, as plain tensors."""
    images = torch.stack([image.as_subclass(torch.Tensor) for image, _ in samples])
    masks = torch.stack([mask.as_subclass(torch.Tensor) for _, mask in samples]).long()
    return images, masks

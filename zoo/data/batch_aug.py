"""Whole-batch augmentation with tensor ops, for datasets held in memory as uint8 tensors.

Per-sample Python transforms cost more than the model itself for 28-32 px images on a
2-core CPU, so each batch is augmented at once: a random crop after zero padding (small
images) or a random resized crop (photos: Szegedy et al. 2015's area and aspect jitter, one
``torchvision.ops.roi_align`` box per image, resampled to the training size), horizontal
flip (on [0, 1] images, so padding is black), then normalisation, then random erasing
(Zhong et al. 2020). All randomness comes from one
``torch.Generator`` seeded per (seed, epoch, step) and drawn for the *global* batch, so
results do not depend on how the batch is split across processes, and a resumed run sees
exactly the augmentations it would have seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.ops import roi_align


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(x - mean) / std per channel for an NCHW float batch."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


@dataclass
class BatchAugment:
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 4
    hflip: bool = True
    random_erasing: float = 0.0
    erase_area: tuple[float, float] = (0.02, 1 / 3)
    erase_ratio: tuple[float, float] = (0.3, 3.3)
    # Random resized crop: () is off; else the (min, max) fraction of the image's area a crop
    # covers, resampled to ``size`` (H, W; (0, 0): the images' own size). Replaces the padded crop.
    rrc_scale: tuple[float, float] | tuple[()] = ()
    rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    size: tuple[int, int] = (0, 0)

    def __post_init__(self):
        if self.rrc_scale and self.crop_padding:
            raise ValueError(
                "choose one crop: a random resized crop (rrc_scale) or a padded crop (crop_padding), not both"
            )
        if self.rrc_scale and not 0 < self.rrc_scale[0] <= self.rrc_scale[1] <= 1:
            raise ValueError(f"rrc_scale must be (min, max) with 0 < min <= max <= 1, got {self.rrc_scale}")

    def __call__(self, x: torch.Tensor, gen: torch.Generator, rank: int = 0, world: int = 1) -> torch.Tensor:
        """Augment and normalise float images ``x`` in [0, 1]: this process's contiguous shard
        ``rank`` of a global batch ``world`` times as large. Random draws cover the whole global batch."""
        n_global = x.shape[0] * world
        index = slice(rank * x.shape[0], (rank + 1) * x.shape[0])
        if self.rrc_scale:
            size = self.size if all(self.size) else tuple(x.shape[-2:])
            x = random_resized_crop(x, size, self.rrc_scale, self.rrc_ratio, gen, n_global, index)
        elif self.crop_padding > 0:
            x = random_crop(x, self.crop_padding, gen, n_global, index)
        if self.hflip:
            flip = (torch.rand(n_global, generator=gen) < 0.5)[index]
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = normalize(x, self.mean, self.std)
        if self.random_erasing > 0:
            x = random_erase(x, self.random_erasing, self.erase_area, self.erase_ratio, gen, n_global, index)
        return x


def random_crop(
    x: torch.Tensor, padding: int, gen: torch.Generator, n_global: int, index: slice
) -> torch.Tensor:
    """Zero-pad by ``padding`` then cut a random H x W window per image (one gather, no loop)."""
    B, C, H, W = x.shape
    dy = torch.randint(0, 2 * padding + 1, (n_global,), generator=gen)[index]
    dx = torch.randint(0, 2 * padding + 1, (n_global,), generator=gen)[index]
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    rows = (dy[:, None] + torch.arange(H))[:, None, :, None]  # B,1,H,1
    cols = (dx[:, None] + torch.arange(W))[:, None, None, :]  # B,1,1,W
    batch = torch.arange(B)[:, None, None, None]
    chans = torch.arange(C)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_resized_crop(
    x: torch.Tensor,
    size: tuple[int, int],
    scale: tuple[float, float],
    ratio: tuple[float, float],
    gen: torch.Generator,
    n_global: int,
    index: slice,
) -> torch.Tensor:
    """A random box per image, covering ``scale`` of its area at an aspect ratio (w/h) drawn
    log-uniformly from ``ratio``, resampled to ``size`` by ``roi_align`` (bilinear, averaging
    about one sample per source pixel, so a large box shrinks without aliasing). Where a draw
    does not fit, its sides are clipped to the image (torchvision's RandomResizedCrop redraws
    instead, then falls back to a centre crop: a loop per image)."""
    B, C, H, W = x.shape
    area = torch.empty(n_global).uniform_(*scale, generator=gen)[index] * H * W
    log_r = torch.empty(n_global).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)[index]
    aspect = log_r.exp()
    w = (area * aspect).sqrt().clamp(max=W)
    h = (area / aspect).sqrt().clamp(max=H)
    left = torch.rand(n_global, generator=gen)[index] * (W - w)
    top = torch.rand(n_global, generator=gen)[index] * (H - h)
    boxes = torch.stack([torch.arange(B, dtype=x.dtype), left, top, left + w, top + h], 1).to(x.dtype)
    # roi_align's "aligned" takes pixel centres at k + 0.5, the convention of these box edges.
    return roi_align(x, boxes, size, spatial_scale=1.0, sampling_ratio=0, aligned=True)


def random_erase(
    x: torch.Tensor,
    p: float,
    area: tuple[float, float],
    ratio: tuple[float, float],
    gen: torch.Generator,
    n_global: int,
    index: slice,
) -> torch.Tensor:
    """Replace one random rectangle per selected image with Gaussian noise (the normalised-space
    equivalent of random pixel values), as in Zhong et al., "Random Erasing Data Augmentation"."""
    B, C, H, W = x.shape
    apply = (torch.rand(n_global, generator=gen) < p)[index]
    target = torch.empty(n_global).uniform_(*area, generator=gen)[index] * H * W
    log_r = torch.empty(n_global).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)[index]
    aspect = log_r.exp()
    h = (target * aspect).sqrt().round().clamp(1, H).long()
    w = (target / aspect).sqrt().round().clamp(1, W).long()
    top = (torch.rand(n_global, generator=gen)[index] * (H - h + 1)).floor().long()
    left = (torch.rand(n_global, generator=gen)[index] * (W - w + 1)).floor().long()
    noise = torch.randn((n_global, C, H, W), generator=gen)[index].to(x.dtype)
    ys = torch.arange(H)[None, :, None]
    xs = torch.arange(W)[None, None, :]
    inside = (ys >= top[:, None, None]) & (ys < (top + h)[:, None, None])
    inside = inside & (xs >= left[:, None, None]) & (xs < (left + w)[:, None, None])
    mask = (inside & apply[:, None, None])[:, None]
    return torch.where(mask, noise, x)

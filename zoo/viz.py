"""Pictures of what a model predicts, for eval.py and the README."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import torch
from torchvision.utils import draw_bounding_boxes, draw_keypoints, make_grid, save_image

from .data.registry import DatasetInfo


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend: figures are written to files, never shown, so
    this works without a display. Set when called, not on import: importing zoo leaves a
    notebook's backend alone."""
    matplotlib.use("Agg")
    return plt


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


# -- segmentation ---------------------------------------------------------------------------


def colorize(labels: torch.Tensor, palette) -> torch.Tensor:
    """(N, H, W) class indices -> (N, 3, H, W) uint8 colours; indices past the palette are black."""
    colours = torch.tensor(palette, dtype=torch.uint8)
    colours = torch.cat([colours, torch.zeros(1, 3, dtype=torch.uint8)])  # for anything unexpected
    return colours[labels.long().clamp(0, len(colours) - 1)].permute(0, 3, 1, 2)


def denormalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalised float images back to uint8 for display."""
    mean = torch.tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=images.dtype).view(1, -1, 1, 1)
    return (images * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)


@torch.no_grad()
def save_segmentation_overlays(model, loader, info: DatasetInfo, n: int, path: str | Path) -> Path:
    """A PNG grid with one row per image: the image, its ground truth, the prediction.

    The first ``n`` images of ``loader`` (batches of (images, masks)); colours are
    ``info.palette`` (void black).
    """
    was_training = model.training
    model.eval()
    rows, seen = [], 0
    for images, masks in loader.batches(0) if hasattr(loader, "batches") else loader:
        images, masks = images[: n - seen], masks[: n - seen]
        preds = model(images.to(_device(model)))["out"].argmax(1)
        shown = denormalize(images.float().cpu(), info.mean, info.std)
        for image, truth, pred in zip(
            shown, colorize(masks.cpu(), info.palette), colorize(preds.cpu(), info.palette)
        ):
            rows += [image, truth, pred]
        seen += len(images)
        if seen >= n:
            break
    model.train(was_training)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = make_grid(torch.stack(rows).float() / 255, nrow=3, padding=4, pad_value=1.0)
    save_image(grid, path)
    return path


# -- detection --------------------------------------------------------------------------------

TRUTH_COLOUR, PREDICTION_COLOUR = "lime", "red"


@torch.no_grad()
def save_detection_boxes(
    model, loader, info: DatasetInfo, n: int, path: str | Path, score_thresh: float = 0.3
) -> Path:
    """A PNG grid of the first ``n`` images with ground-truth boxes (green) and predictions
    scoring at least ``score_thresh`` (red, labelled with class and score)."""
    was_training = model.training
    model.eval()
    drawn, classes = [], info.classes
    for images, targets in loader.batches(0) if hasattr(loader, "batches") else loader:
        images, targets = images[: n - len(drawn)], targets[: n - len(drawn)]
        shown = denormalize(images.float().cpu(), info.mean, info.std)
        for image, target, pred in zip(shown, targets, model(images.to(_device(model)))):
            keep = pred["scores"].cpu() >= score_thresh
            boxes, labels, scores = (pred[k].cpu()[keep] for k in ("boxes", "labels", "scores"))
            image = draw_bounding_boxes(image, target["boxes"].cpu(), colors=TRUTH_COLOUR, width=2)
            names = [f"{classes[int(c)]} {s:.2f}" for c, s in zip(labels, scores.tolist())]
            drawn.append(draw_bounding_boxes(image, boxes, names, colors=PREDICTION_COLOUR, width=2))
        if len(drawn) >= n:
            break
    model.train(was_training)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(torch.stack(drawn).float() / 255, nrow=min(4, len(drawn)), padding=4), path)
    return path


class NothingDetectedError(ValueError):
    """A picture of a detection was asked for where the model detects nothing."""


@torch.no_grad()
def save_sampling_points(model, image: torch.Tensor, info: DatasetInfo, path: str | Path) -> Path:
    """Where the deformable head looks, for the location at the centre of the top detection of
    ``image`` (normalised (3, H, W)): the regular 3x3 grid (blue dots), the learned sampling
    points (red dots, larger for larger DCNv2 mask) and a line from each tap to where it moved."""
    was_training = model.training
    model.eval()
    pred = model(image[None].to(_device(model)))[0]
    model.train(was_training)
    if len(pred["boxes"]) == 0:
        raise NothingDetectedError("the model detects nothing in this image; no head location to show")
    box = pred["boxes"][0]
    level, row, col = model.level_for_box(box)
    points = model.sampling_locations(image, level, row, col)
    shown = denormalize(image[None].float().cpu(), info.mean, info.std)[0]
    shown = draw_bounding_boxes(shown, box[None].cpu(), colors=PREDICTION_COLOUR, width=1)
    moves = torch.stack([points["grid"], points["deformed"]], dim=1).cpu()  # one 2-point "instance" per tap
    shown = draw_keypoints(shown, moves, connectivity=[(0, 1)], colors="yellow", radius=0, width=1)
    shown = draw_keypoints(shown, points["grid"][None].cpu(), colors="blue", radius=3)
    for xy, m in zip(points["deformed"].cpu(), points["mask"].cpu().tolist()):
        shown = draw_keypoints(shown, xy[None, None], colors="red", radius=max(1, round(2 * m)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(shown.float() / 255, path)
    return path

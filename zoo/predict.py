"""Run a model on image files: reading, the weights' preprocessing, batched inference.

``zoo predict`` (``zoo/cli.py``) is a thin layer over this module; what differs by task is
the task's ``TaskUse`` (``zoo.tasks_use``):

- ``read_image`` decodes a PNG or JPEG of any size and mode with Pillow and converts it to the
  model's channels (grey or RGB; palette, alpha and 16-bit images included).
- ``Preprocess`` applies what the weights record (``zoo.weights.eval_transforms``: scaling to
  [0, 1] and normalisation), after bringing the image to the weights' scale as the task says:
  classifiers see the shorter side resized to the input size and a centre crop, or the whole
  image resized to the input size when the weights trained on squashed images
  (``fit="squash"``, with the weights' interpolation); dense models (segmentation, detection)
  see the image resized to fit the input size with its aspect ratio kept, and their outputs
  are mapped back to the original pixels. An image already at the input size (as the test
  splits are) is not resized, so predictions equal what ``eval.py`` scores.
- ``predict`` batches images of equal preprocessed size and returns one record per file;
  an unreadable file gives a record with an ``error`` instead.
- the task's ``TaskUse.save`` draws the pictures (segmentation: mask and overlay; detection:
  boxes), ``TaskUse.lines`` says what is printed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn as nn
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .tasks_use import ModelCard, get_use
from .weights import eval_transforms


class ImageReadError(ValueError):
    """A file that is not a readable image; the message names it."""


# -- reading and preprocessing ---------------------------------------------------------------


def read_image(path: str | Path, in_chans: int) -> torch.Tensor:
    """(C, H, W) uint8 of the image file, in grey (``in_chans=1``) or RGB (3)."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the top 8 bits
                img = img.point(lambda v: v / 256).convert("L")
            img = img.convert("L" if in_chans == 1 else "RGB")
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path}: not a readable PNG or JPEG image ({err})") from None
    if in_chans not in (1, 3):
        raise ImageReadError(f"{path}: the model takes {in_chans} channels; images give 1 or 3")
    return TF.pil_to_tensor(img)


class Preprocess:
    """The weights' eval transforms, after bringing the image to the weights' scale (see module doc)."""

    def __init__(self, card: ModelCard):
        self.card = card
        self.use = get_use(card.task)
        self.normalise = eval_transforms_for(card)

    def model_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) the model sees for an image of ``height`` x ``width``."""
        return self.use.model_size(self.card.input, height, width)

    def resize(self, image: torch.Tensor) -> torch.Tensor:
        """(C, H, W) uint8 at the weights' scale (unchanged when already at the input size)."""
        h, w = self.card.input.input_size
        if tuple(image.shape[-2:]) == (h, w):
            return image
        return self.use.resize(image, self.card.input)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.normalise(self.resize(image))


def eval_transforms_for(card: ModelCard):
    """The weights' own ``eval_transforms``; for a card without weights, the same steps from its spec."""
    if card.weights is not None:
        return eval_transforms(card.weights)
    spec = card.input
    return v2.Compose(
        [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(spec.mean, spec.std)]
    )


# -- inference ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Loaded:
    """An image read and preprocessed: its original (H, W) and what the model sees."""

    index: int
    original: torch.Tensor  # (C, H, W) uint8, as read
    tensor: torch.Tensor  # (C, h, w) float, preprocessed


def load_images(paths: list[str | Path], preprocess: Preprocess) -> tuple[list[Loaded], dict[int, str]]:
    """Every readable image, preprocessed; and the error message of each unreadable one, by index."""
    loaded, errors = [], {}
    for i, path in enumerate(paths):
        try:
            image = read_image(path, preprocess.card.input.in_chans)
        except ImageReadError as err:
            errors[i] = str(err)
            continue
        loaded.append(Loaded(i, image, preprocess(image)))
    return loaded, errors


def batches(loaded: list[Loaded], batch_size: int):
    """Groups of at most ``batch_size`` images of the same preprocessed size, in input order."""
    by_size: dict[tuple[int, ...], list[Loaded]] = {}
    for item in loaded:
        by_size.setdefault(tuple(item.tensor.shape), []).append(item)
    for group in by_size.values():
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]


@torch.no_grad()
def predict(
    model: nn.Module,
    card: ModelCard,
    paths: list[str | Path],
    topk: int = 5,
    batch_size: int = 16,
) -> list[dict]:
    """One record per path, in order: ``{"path", "size": [H, W], <task's results>}`` or
    ``{"path", "error"}``. The task's results are its ``TaskUse.results`` (``zoo.tasks_use``):

    - classification ``"top"``: the ``topk`` most probable classes, ``{"label", "index", "prob"}``;
    - segmentation ``"class_fractions"``: ``{label: fraction of the pixels}``, and ``"mask"``
      (H, W) class indices (a tensor, dropped from JSON);
    - detection ``"detections"``: ``{"label", "index", "score", "box": [x1, y1, x2, y2]}`` in the
      image's pixels, by decreasing score (every detection the model returns).
    """
    model.eval()
    device = next(model.parameters()).device
    preprocess = Preprocess(card)
    loaded, errors = load_images(paths, preprocess)
    records: dict[int, dict] = {i: {"path": str(paths[i]), "error": e} for i, e in errors.items()}
    for group in batches(loaded, batch_size):
        out = model(torch.stack([item.tensor for item in group]).to(device))
        for j, item in enumerate(group):
            h, w = item.original.shape[-2:]
            seen = tuple(item.tensor.shape[-2:])
            record = {"path": str(paths[item.index]), "size": [h, w]}
            record.update(preprocess.use.results(out, j, card, (h, w), seen, topk))
            record["image"] = item.original
            records[item.index] = record
    return [records[i] for i in range(len(paths))]


def json_record(record: dict) -> dict:
    """The record without its tensors (the image and the mask), for ``--json``."""
    return {k: v for k, v in record.items() if not isinstance(v, torch.Tensor)}


# -- files written ------------------------------------------------------------------------------


def output_stems(paths: list[str | Path], out: Path) -> list[Path]:
    """``out/<file stem>`` per input, made unique (``_2``, ``_3``...) when two inputs share a stem."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(out / (stem if seen[stem] == 1 else f"{stem}_{seen[stem]}"))
    return stems

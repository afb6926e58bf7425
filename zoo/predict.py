"""Run a model on image files: reading, the weights' preprocessing, batched inference, pictures.

``zoo predict`` (``zoo/cli.py``) is a thin layer over this module:

- ``read_image`` decodes a PNG or JPEG of any size and mode with Pillow and converts it to the
  model's channels (grey or RGB; palette, alpha and 16-bit images included).
- ``Preprocess`` applies what the weights record (``zoo.weights.eval_transforms``: scaling to
  [0, 1] and normalisation), after bringing the image to the weights' scale: classifiers see
  the shorter side resized to the input size and a centre crop; dense models (segmentation,
  detection) see the image resized to fit the input size with its aspect ratio kept, and their
  outputs are mapped back to the original pixels. An image already at the input size (as the
  test splits are) is not resized, so predictions equal what ``eval.py`` scores.
- ``predict`` batches images of equal preprocessed size and returns one record per file;
  an unreadable file gives a record with an ``error`` instead.
- ``save_segmentation`` / ``save_detections`` draw the pictures
  (``torchvision.utils.draw_segmentation_masks`` / ``draw_bounding_boxes``, a legend in Pillow).
"""

from __future__ import annotations

import colorsys
import dataclasses
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageDraw, UnidentifiedImageError
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from ._manifest import InputSpec, WeightsEntry
from ._registry import get_entry
from .data import dataset_info, list_datasets
from .weights import eval_transforms


class ImageReadError(ValueError):
    """A file that is not a readable image; the message names it."""


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What predicting needs to know besides the weights: task, input spec, class names, colours."""

    name: str
    task: str
    input: InputSpec
    label_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...] = ()
    weights: WeightsEntry | None = None

    @classmethod
    def from_weights(cls, w: WeightsEntry) -> ModelCard:
        palette = dataset_info(w.dataset).palette if w.dataset in list_datasets() else ()
        labels = tuple(w.label_names) or tuple(f"class{i}" for i in range(w.num_classes))
        return cls(w.name, w.task, w.input, labels, tuple(palette), w)

    @classmethod
    def from_model(cls, name: str, model: nn.Module, mean=None, std=None) -> ModelCard:
        """For a model without published weights (random init or an unvouched checkpoint): the
        architecture's input size, mean 0.5 / std 0.5 unless given, classes named by index."""
        entry = get_entry(name)
        chans = model.in_chans
        spec = InputSpec(
            in_chans=chans,
            input_size=list(entry.input_size[1:]),
            mean=list(mean or [0.5] * chans),
            std=list(std or [0.5] * chans),
        )
        return cls(name, entry.task, spec, tuple(f"class{i}" for i in range(model.num_classes)))

    def colours(self) -> list[tuple[int, int, int]]:
        """One colour per class: the dataset's palette, else evenly spaced hues."""
        if len(self.palette) >= len(self.label_names):
            return [tuple(c) for c in self.palette[: len(self.label_names)]]
        n = max(len(self.label_names), 1)
        return [tuple(round(255 * v) for v in colorsys.hsv_to_rgb(i / n, 0.85, 0.95)) for i in range(n)]


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
        self.normalise = eval_transforms_for(card)

    def model_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) the model sees for an image of ``height`` x ``width``."""
        h, w = self.card.input.input_size
        if self.card.task == "classification":
            return h, w
        scale = min(h / height, w / width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def resize(self, image: torch.Tensor) -> torch.Tensor:
        """(C, H, W) uint8 at the weights' scale (unchanged when already at the input size)."""
        h, w = self.card.input.input_size
        if tuple(image.shape[-2:]) == (h, w):
            return image
        if self.card.task != "classification":
            return TF.resize(image, list(self.model_size(*image.shape[-2:])), antialias=True)
        if self.card.input.resize_size is None:  # else the weights' own transforms resize and crop
            image = TF.center_crop(TF.resize(image, min(h, w), antialias=True), [h, w])
        return image

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
    ``{"path", "error"}``. The task's results:

    - classification ``"top"``: the ``topk`` most probable classes, ``{"label", "index", "prob"}``;
    - segmentation ``"class_fractions"``: ``{label: fraction of the pixels}``, and ``"mask"``
      (H, W) class indices (a tensor, dropped from JSON);
    - detection ``"detections"``: ``{"label", "index", "score", "box": [x1, y1, x2, y2]}`` in the
      image's pixels, by decreasing score (every detection the model returns).
    """
    model.eval()
    device = next(model.parameters()).device
    loaded, errors = load_images(paths, Preprocess(card))
    records: dict[int, dict] = {i: {"path": str(paths[i]), "error": e} for i, e in errors.items()}
    for group in batches(loaded, batch_size):
        out = model(torch.stack([item.tensor for item in group]).to(device))
        for j, item in enumerate(group):
            h, w = item.original.shape[-2:]
            record = {"path": str(paths[item.index]), "size": [h, w]}
            if card.task == "classification":
                record["top"] = _top(out[j].float().softmax(0), card, topk)
            elif card.task == "segmentation":
                logits = F.interpolate(out["out"][j : j + 1].float(), size=(h, w), mode="bilinear")
                mask = logits[0].argmax(0).cpu()
                counts = torch.bincount(mask.flatten(), minlength=len(card.label_names)).tolist()
                record["class_fractions"] = {
                    name: round(c / mask.numel(), 4) for name, c in zip(card.label_names, counts)
                }
                record["mask"] = mask
            else:
                record["detections"] = _detections(out[j], card, (h, w), item.tensor.shape[-2:])
            record["image"] = item.original
            records[item.index] = record
    return [records[i] for i in range(len(paths))]


def _top(probs: torch.Tensor, card: ModelCard, k: int) -> list[dict]:
    values, indices = probs.topk(min(k, len(probs)))
    return [
        {"label": card.label_names[i], "index": i, "prob": round(p, 4)}
        for p, i in zip(values.tolist(), indices.tolist())
    ]


def _detections(pred: dict, card: ModelCard, original: tuple[int, int], seen: tuple[int, int]) -> list[dict]:
    """The model's detections with boxes scaled from the size it saw back to the image's."""
    sy, sx = original[0] / seen[0], original[1] / seen[1]
    boxes = pred["boxes"].float().cpu() * torch.tensor([sx, sy, sx, sy])
    return [
        {"label": card.label_names[c], "index": c, "score": round(s, 4), "box": [round(v, 1) for v in b]}
        for b, s, c in zip(boxes.tolist(), pred["scores"].tolist(), pred["labels"].tolist())
    ]


def json_record(record: dict) -> dict:
    """The record without its tensors (the image and the mask), for ``--json``."""
    return {k: v for k, v in record.items() if not isinstance(v, torch.Tensor)}


# -- pictures -------------------------------------------------------------------------------------


def as_rgb(image: torch.Tensor) -> torch.Tensor:
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def with_legend(image: torch.Tensor, names: list[str], colours: list[tuple[int, int, int]]) -> Image.Image:
    """``image`` (3, H, W) uint8 with a strip below it: a colour swatch and the name of each class."""
    picture = Image.fromarray(image.permute(1, 2, 0).numpy())
    row, pad = 14, 4
    strip = Image.new("RGB", (picture.width, pad + row * len(names)), "white")
    draw = ImageDraw.Draw(strip)
    for i, (name, colour) in enumerate(zip(names, colours)):
        y = pad + i * row
        draw.rectangle([pad, y, pad + 10, y + 10], fill=tuple(colour))
        draw.text((pad + 16, y - 1), name, fill="black")
    out = Image.new("RGB", (picture.width, picture.height + strip.height), "white")
    out.paste(picture, (0, 0))
    out.paste(strip, (0, picture.height))
    return out


def save_png(picture: Image.Image | torch.Tensor, path: Path) -> str:
    if isinstance(picture, torch.Tensor):
        picture = Image.fromarray(picture.permute(1, 2, 0).numpy())
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return str(path)


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


def output_stems(paths: list[str | Path], out: Path) -> list[Path]:
    """``out/<file stem>`` per input, made unique (``_2``, ``_3``...) when two inputs share a stem."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(out / (stem if seen[stem] == 1 else f"{stem}_{seen[stem]}"))
    return stems

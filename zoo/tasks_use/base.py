"""The card of a model to run, the interface of a task's use side, its registry, and the
picture helpers the tasks share."""

from __future__ import annotations

import colorsys
import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from PIL import Image, ImageDraw
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .._manifest import InputSpec, WeightsEntry
from .._registry import get_entry
from .._tasks import TASKS, unknown_task
from ..data import dataset_info, list_datasets
from ..engine.checkpoint import SavedRun

# -- what running a model needs to know besides its weights -------------------------------------


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
    def from_run(cls, name: str, run: SavedRun) -> ModelCard:
        """For a run's own weights: the dataset description the run carries (its classes,
        normalisation, input size and how a picture of another size fits it). A dataset whose
        images vary in size (input size 0x0) leaves the architecture's input size."""
        info = run.info
        size = list(info.input_size) if all(info.input_size) else list(get_entry(name).input_size[1:])
        spec = InputSpec(
            in_chans=info.in_chans,
            input_size=size,
            mean=list(info.mean),
            std=list(info.std),
            interpolation="bilinear",
            resize_size=None,
            fit=info.fit,
        )
        return cls(name, run.cfg.task, spec, tuple(info.classes), tuple(info.palette))

    @classmethod
    def from_model(cls, name: str, model: nn.Module, mean=None, std=None) -> ModelCard:
        """For a model without published weights (random init or a bare state dict): the
        architecture's input size, mean 0.5 / std 0.5 unless given, classes named by index."""
        entry = get_entry(name)
        chans = model.in_chans
        spec = InputSpec(
            in_chans=chans,
            input_size=list(entry.input_size[1:]),
            mean=list(mean or [0.5] * chans),
            std=list(std or [0.5] * chans),
            interpolation="bilinear",
            resize_size=None,
        )
        return cls(name, entry.task, spec, tuple(f"class{i}" for i in range(model.num_classes)))

    def colours(self) -> list[tuple[int, int, int]]:
        """One colour per class: the dataset's palette, else evenly spaced hues."""
        if len(self.palette) >= len(self.label_names):
            return [tuple(c) for c in self.palette[: len(self.label_names)]]
        n = max(len(self.label_names), 1)
        return [tuple(round(255 * v) for v in colorsys.hsv_to_rgb(i / n, 0.85, 0.95)) for i in range(n)]


# -- the use side of a task ----------------------------------------------------------------------


class TaskUse:
    """What the commands do with a task's models. One subclass per task, registered with
    ``@register_use``; ``zoo predict``, ``zoo export``, ``zoo explain`` and ``eval.py`` call
    only these methods, so a new task needs no edit in any of them.

    The defaults suit a model that sees a fixed input size (a classifier); ``DenseTaskUse``
    is the base of the tasks that see the whole image and answer in its pixels.
    """

    name = ""

    # -- zoo predict: from a file to what the model sees -----------------------------------------

    def model_size(self, spec: InputSpec, height: int, width: int) -> tuple[int, int]:
        """The (H, W) the model sees for an image of ``height`` x ``width``: the input size."""
        h, w = spec.input_size
        return h, w

    def resize(self, image: torch.Tensor, spec: InputSpec) -> torch.Tensor:
        """(C, H, W) uint8 at the model's scale, for an image not already at the input size.

        ``fit="squash"``: both sides to the input size (the weights saw squashed photos);
        else the shorter side to the input size and a centre crop, unless the weights' own
        transforms resize and crop (``resize_size``)."""
        h, w = spec.input_size
        if spec.fit == "squash":
            mode = v2.InterpolationMode(spec.interpolation)
            return TF.resize(image, [h, w], interpolation=mode, antialias=True)
        if spec.resize_size is None:
            image = TF.center_crop(TF.resize(image, min(h, w), antialias=True), [h, w])
        return image

    # -- zoo predict: the answer, printed and drawn -----------------------------------------------

    def results(
        self, out: Any, j: int, card: ModelCard, size: tuple[int, int], seen: tuple[int, int], topk: int
    ) -> dict[str, Any]:
        """Image ``j``'s results from the batch output ``out``, as fields of its record.
        ``size``: the image's (H, W); ``seen``: the (H, W) the model saw."""
        raise NotImplementedError

    def lines(self, record: dict, threshold: float) -> list[str]:
        """What ``zoo predict`` prints about one record's results, a string a line."""
        raise NotImplementedError

    def save(self, record: dict, card: ModelCard, stem: Path, threshold: float) -> dict[str, Any]:
        """The files ``zoo predict`` writes for a record (``<stem>_<kind>.png``), as fields to
        add to it (``"pictures": {kind: path}``); none by default."""
        return {}

    # -- zoo export ------------------------------------------------------------------------------

    outputs: tuple[str, ...] = ("logits",)  # the names of the exported graph's outputs
    export_note = ""  # a line zoo export prints about the outputs, when their layout needs one

    def exportable(self, model: nn.Module) -> nn.Module | None:
        """The module that is exported (its outputs are ``outputs``); ``None``: no export."""
        return model

    def onnx_translations(self) -> dict:
        """ONNX translations of the custom ops the exported module calls."""
        return {}

    def as_outputs(self, out: Any) -> list[torch.Tensor]:
        """The model's own output for a batch, in the exported layout."""
        return [out]

    def compare(self, expected: list[torch.Tensor], got: list[torch.Tensor]) -> tuple[float, str]:
        """The largest |difference| between PyTorch's and onnxruntime's outputs, and a note."""
        return float((expected[0].float() - got[0].float()).abs().max()), ""

    # -- zoo explain -----------------------------------------------------------------------------

    def explanations(self, model: nn.Module) -> tuple[str, ...]:
        """What ``zoo explain`` shows by default, by the names ``zoo.explain.EXPLAINERS`` knows."""
        return ("gradcam", "attention")

    # -- eval.py ---------------------------------------------------------------------------------

    eval_pictures: tuple[str, ...] = ()  # eval.py's picture options that apply (``save_overlays``)

    def eval_lines(self, result: dict) -> list[str]:
        """eval.py's summary of one evaluation: the numbers, then each table of numbers."""
        lines = [
            f"\n{result['name']} on {result['dataset']} ({result['split']}, {result['num_samples']} "
            f"samples, {result['img_per_s']} img/s)"
        ]
        for k, v in result.items():
            if isinstance(v, (int, float)) and k not in ("num_samples", "img_per_s"):
                lines.append(f"  {k:>12}: {v}")
        for k, v in result.items():
            if isinstance(v, dict):
                lines.append(f"  {k}:")
                lines += [f"    {name:>14}: {x}" for name, x in v.items()]
        return lines


class DenseTaskUse(TaskUse):
    """A task whose model sees the whole image, resized to fit the input size with its aspect
    ratio kept, and whose outputs are mapped back to the image's pixels."""

    def model_size(self, spec, height, width):
        h, w = spec.input_size
        scale = min(h / height, w / width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def resize(self, image, spec):
        return TF.resize(image, list(self.model_size(spec, *image.shape[-2:])), antialias=True)


_USES: dict[str, TaskUse] = {}


def register_use(cls: type[TaskUse]) -> type[TaskUse]:
    """Class decorator: register a task's use side under its ``name``, one of ``zoo._tasks.TASKS``."""
    if cls.name not in TASKS:
        raise ValueError(f"task {cls.name!r} is not one of zoo._tasks.TASKS {TASKS}; add it there")
    if cls.name in _USES:
        raise ValueError(f"the use side of task {cls.name!r} is already registered")
    _USES[cls.name] = cls()
    return cls


def get_use(task: str) -> TaskUse:
    """The registered use side of ``task``; an unknown task is a ``ValueError`` naming the known ones."""
    if task not in _USES:
        raise unknown_task(task, list_uses())
    return _USES[task]


def list_uses() -> list[str]:
    return sorted(_USES)


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

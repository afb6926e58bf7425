"""Export any registered model to ONNX, and check the file against PyTorch in onnxruntime.

    python -m zoo export resnet20.fashion_mnist --format onnx --out resnet20.onnx

The graph comes from ``torch.onnx.export(..., dynamo=True)`` at opset 18 with a dynamic batch
dimension (the height and width are those of the example input: ``input_size``, the weights'
by default). What is exported, and how its outputs are checked, is the task's
(``TaskUse.exportable``, ``outputs``, ``as_outputs``, ``compare`` in ``zoo.tasks_use``):

- classification: ``logits`` (N, classes);
- segmentation: ``logits`` (N, classes, H, W), at the input size;
- detection (FCOS): the detections after NMS, as in PyTorch's ``model(images)``, flattened
  over the batch: ``boxes`` (D, 4) xyxy in input pixels, ``scores`` (D,), ``labels`` (D,) and
  ``batch_index`` (D,), the image each detection belongs to; sorted by image, then by
  decreasing score, at most ``model.max_detections`` per image. The score threshold, the
  top-k per level and the per-class NMS (ONNX ``NonMaxSuppression``) all run in the graph.

Two things make the export possible:

- torchvision's ``deform_conv2d`` has no ONNX translation (torchvision #2066, pytorch
  #68910); the exported copy of the model sets every ``DeformConv2d`` to the project's own
  ``impl="grid_sample"`` (``F.grid_sample`` + matmul, ONNX ``GridSample``), the same operator.
  That stays inside this module.
- torchvision's ``nms`` has none for the dynamo exporter either; the detection graph calls
  the ``zoo::nms`` op (``zoo.tasks_use.detection``), whose PyTorch implementation is
  torchvision's ``nms`` class by class and whose ONNX translation is ``NonMaxSuppression``.
  Every task's translations are given to the exporter (``TaskUse.onnx_translations``).

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

from .layers import DeformConv2d
from .tasks_use import get_use, list_uses
from .tasks_use.detection import DETECTION_OUTPUTS as DETECTION_OUTPUTS  # the detector's outputs

OPSET = 18
# Largest |ONNX - PyTorch| allowed by default, for logits and for detection boxes (pixels) and
# scores. float32 kernels differ in summation order: resnet20's logits differ by ~1e-5, the DCN
# detector's boxes by ~1e-4 px at 480x640.
TOLERANCE = 1e-3


class ExportError(RuntimeError):
    """A model that cannot be exported, or an ONNX file that does not agree with PyTorch."""


def exportable(model: nn.Module, task: str) -> tuple[nn.Module, tuple[str, ...]]:
    """A copy of ``model`` in the form that is exported, and the names of its outputs."""
    use = get_use(task)
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if isinstance(m, DeformConv2d):
            m.impl = "grid_sample"
    module = use.exportable(model)
    if module is None:
        raise ExportError(f"no ONNX export for {type(model).__name__} ({task})")
    return module, use.outputs


def onnx_translations() -> dict:
    """The ONNX translations of every task's custom ops."""
    return {op: fn for task in list_uses() for op, fn in get_use(task).onnx_translations().items()}


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
            custom_translation_table=onnx_translations(),
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
    return get_use(task).as_outputs(model.eval()(images))


def compare(task: str, expected: list[torch.Tensor], got: list[np.ndarray]) -> tuple[float, str]:
    """The largest |difference| between PyTorch's and onnxruntime's outputs, and a note
    (``TaskUse.compare``: detections must be the same ones, for instance)."""
    return get_use(task).compare(expected, [torch.from_numpy(np.asarray(g)) for g in got])


def check_onnx(
    model: nn.Module, task: str, path: str | Path, images: torch.Tensor, tolerance: float = TOLERANCE
) -> ExportReport:
    """Run ``path`` in onnxruntime on ``images`` and compare with ``model`` in PyTorch."""
    expected = reference_outputs(model, task, images)
    diff, detail = compare(task, expected, run_onnxruntime(path, images))
    return ExportReport(Path(path), get_use(task).outputs, tuple(images.shape), diff, tolerance, detail)

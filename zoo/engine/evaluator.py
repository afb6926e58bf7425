"""The evaluator, shared by every task, and evaluation of a published weight or a run.

``evaluate`` runs a model over a loader and updates the task's torchmetrics.
``evaluate_published`` and ``evaluate_run`` are what ``eval.py`` and the tests call: they build
the model and the loader the way the weight or the run says, on the device given.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._builder import create_model
from .._tasks import hflip_metrics
from ..data.registry import DatasetInfo
from ..weights import find_weights
from .checkpoint import load_run
from .tasks import Task, get_task


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader,
    task: Task,
    info: DatasetInfo,
    channels_last: bool = False,
    device: torch.device | str | None = None,
    hflip_tta: bool = False,
) -> dict[str, Any]:
    """Metrics over the whole loader in float32 and eval mode; the model's mode is restored.
    Batches go to ``device``; ``None``: the device the model's parameters are on.
    ``hflip_tta``: also the metrics with test-time flips, named ``*_hflip``."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    metrics = task.metrics(info, hflip_tta=hflip_tta).to(device)
    n, t0 = 0, time.perf_counter()
    for batch in loader.batches(0) if hasattr(loader, "batches") else loader:
        batch = task.to_device(batch, device, channels_last)
        task.eval_step(model, batch, metrics)
        n += task.batch_size(batch)
    seconds = time.perf_counter() - t0
    model.train(was_training)
    result = task.summarize(metrics.compute(), info)
    result["num_samples"] = n
    result["img_per_s"] = round(n / seconds, 1)
    return result


@dataclass
class Evaluation:
    """What an evaluation measured, and what it measured it with (for pictures)."""

    result: dict[str, Any]  # name, dataset, split, metrics, num_samples, img_per_s
    model: torch.nn.Module
    loader: Any
    task: Task
    info: DatasetInfo
    device: torch.device


def uses_hflip_tta(metrics: dict[str, float]) -> bool:
    """Whether recorded metrics include one measured with test-time flips (``*_hflip``)."""
    return bool(hflip_metrics(metrics))


def evaluate_published(
    name: str,
    device: torch.device | str = "cpu",
    data_dir: str | None = None,
    batch_size: int | None = None,
    hflip_tta: bool = False,
    input_size: int | None = None,
) -> Evaluation:
    """Manifest weights on the split they were measured on, with their own preprocessing; with
    test-time flips too when asked or when a recorded metric was measured with them.
    ``input_size`` (classification): the images resized to that square instead of the
    weights' own input size (what a test-time resolution does)."""
    device = torch.device(device)
    w = find_weights(name)
    task = get_task(w.task)
    spec = vars(w.input) | ({"input_size": [input_size, input_size]} if input_size else {})
    loader, info = task.build_eval_loader(
        w.dataset, w.split, data_dir, batch_size or task.eval_batch_size, spec
    )
    if w.label_names:
        info = dataclasses.replace(info, classes=tuple(w.label_names))
    model = create_model(w.name, pretrained=True).to(device)
    hflip_tta = hflip_tta or uses_hflip_tta(w.metrics)
    result = evaluate(model, loader, task, info, device=device, hflip_tta=hflip_tta)
    result = {"name": w.name, "dataset": w.dataset, "split": w.split, **result}
    if input_size:
        result["input_size"] = [input_size, input_size]
    return Evaluation(result, model, loader, task, info, device)


def evaluate_run(
    arch: str,
    path: str | Path,
    device: torch.device | str = "cpu",
    data_dir: str | None = None,
    batch_size: int | None = None,
    hflip_tta: bool = False,
    input_size: int | None = None,
) -> Evaluation:
    """A run's last.ckpt (its EMA weights when the run kept an EMA) or exported
    model.safetensors, on the split and with the normalisation the run used; ``hflip_tta``
    only for a run that trained on mirrored images too (data.hflip)."""
    device = torch.device(device)
    run = load_run(path)
    if run.cfg.model.name != arch:
        raise ValueError(f"{path} holds a {run.cfg.model.name}, not a {arch}")
    if hflip_tta and not run.cfg.data.hflip:
        raise ValueError(
            f"test-time flips: {path} trained with data.hflip=false, so its model never saw a "
            "mirrored image; evaluate it without them"
        )
    task = get_task(run.cfg.task)
    loader, _ = task.build_eval_loader(
        run.cfg.data.dataset,
        run.cfg.data.eval_split,
        data_dir,
        batch_size or task.eval_batch_size,
        {"mean": run.info.mean, "std": run.info.std}
        | ({"input_size": [input_size, input_size]} if input_size else {}),
    )
    model = run.model.to(device)
    result = evaluate(model, loader, task, run.info, device=device, hflip_tta=hflip_tta)
    result = {
        "name": arch,
        "checkpoint": str(path),
        "dataset": run.cfg.data.dataset,
        "split": run.cfg.data.eval_split,
        **result,
    }
    return Evaluation(result, model, loader, task, run.info, device)


def lookup(result: dict, metric: str) -> float | None:
    """A recorded metric's measured value; ``a/b`` reaches into nested results (``per_class_iou/sky``)."""
    value = result
    for part in metric.split("/"):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) else None


def differences(result: dict, recorded: dict[str, float]) -> dict[str, float]:
    """Measured minus recorded for each recorded metric; one the evaluator no longer reports
    is a mismatch too (inf), never skipped."""
    return {
        k: (lookup(result, k) - v) if lookup(result, k) is not None else float("inf")
        for k, v in recorded.items()
    }

"""The evaluator, shared by every task: run the model over a loader, update torchmetrics."""

from __future__ import annotations

import time
from typing import Any

import torch

from .tasks import Task


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, loader, task: Task, info: dict, channels_last: bool = False, device: str = "cpu"
) -> dict[str, Any]:
    """Metrics over the whole loader in float32 and eval mode; the model's mode is restored."""
    was_training = model.training
    model.eval()
    metrics = task.metrics(info["num_classes"]).to(device)
    n, t0 = 0, time.perf_counter()
    for batch in loader.batches(0) if hasattr(loader, "batches") else loader:
        batch = task.to_device(batch, torch.device(device), channels_last)
        task.eval_step(model, batch, metrics)
        n += task.batch_size(batch)
    seconds = time.perf_counter() - t0
    model.train(was_training)
    result = task.summarize(metrics.compute(), info)
    result["num_samples"] = n
    result["img_per_s"] = round(n / seconds, 1)
    return result

"""Test-time flips: measured only when asked for, under their own metric name, and equal to
the top-1 of the mean softmax over each image and its mirror image."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from zoo.data.registry import DatasetInfo
from zoo.engine import get_task
from zoo.engine.evaluator import evaluate, uses_hflip_tta

from .conftest import REPO

INFO = DatasetInfo(
    name="toy",
    task="classification",
    classes=("a", "b", "c"),
    in_chans=1,
    mean=(0.0,),
    std=(1.0,),
    splits=("test",),
)


class LeftRight(nn.Module):
    """Logits from a fixed linear map of the raw pixels: not mirror-symmetric, so a flip
    changes its answers."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 3)
        with torch.no_grad():
            self.fc.weight.copy_(torch.linspace(-1, 1, 48).reshape(3, 16).sin() * 3)
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x.flatten(1))


def batches():
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(20, 1, 4, 4, generator=g), torch.randint(0, 3, (20,), generator=g)) for _ in range(3)
    ]


def expected_top1(model, data, flip: bool) -> float:
    correct = n = 0
    with torch.no_grad():
        for x, y in data:
            probs = model(x).softmax(1)
            if flip:
                probs = (probs + model(x.flip(-1)).softmax(1)) / 2
            correct += (probs.argmax(1) == y).sum().item()
            n += len(y)
    return round(100 * correct / n, 2)


def test_flip_metric_is_the_mean_softmax_over_image_and_mirror():
    model, data, task = LeftRight(), batches(), get_task("classification")
    plain = evaluate(model, data, task, INFO, device="cpu")
    both = evaluate(model, data, task, INFO, device="cpu", hflip_tta=True)
    assert "top1_hflip" not in plain  # never measured unless asked for
    assert both["top1"] == plain["top1"] == expected_top1(model, data, flip=False)
    assert both["top1_hflip"] == expected_top1(model, data, flip=True)
    assert both["top1_hflip"] != both["top1"]  # the toy model is not symmetric: the flip counted
    assert both["per_class_acc"] == plain["per_class_acc"]


def test_tasks_without_flips_refuse_them():
    with pytest.raises(ValueError, match="classification, not segmentation"):
        evaluate(LeftRight(), batches(), get_task("segmentation"), INFO, device="cpu", hflip_tta=True)


def test_recorded_metrics_say_when_a_weight_is_measured_with_flips():
    assert uses_hflip_tta({"top1": 95.0, "top1_hflip": 95.2})
    assert not uses_hflip_tta({"top1": 95.0, "top5": 99.9})


def test_flip_metric_never_shares_state_with_top1():
    """With compute groups, metrics whose states are equal after the first update share one
    state; an equal first batch would then make top1_hflip a copy of top1."""
    metrics = get_task("classification").metrics(INFO, hflip_tta=True)
    metrics.update(torch.eye(3)[[0, 1, 2]], torch.tensor([0, 1, 2]))  # both metrics see the same
    assert not metrics.compute_groups or all(len(g) == 1 for g in metrics.compute_groups.values())


def test_other_tasks_refuse_flip_metrics():
    for name in ("segmentation", "detection"):
        with pytest.raises(ValueError, match="test-time flips"):
            get_task(name).metrics(INFO, hflip_tta=True)


def test_a_run_that_never_saw_mirrored_images_is_not_measured_with_flips(tmp_path, monkeypatch):
    import zoo.engine.evaluator as evaluator

    class Cfg:
        class model:
            name = "resnet20"

        class data:
            hflip = False

    monkeypatch.setattr(evaluator, "load_run", lambda path: type("Run", (), {"cfg": Cfg})())
    with pytest.raises(ValueError, match="data.hflip=false"):
        evaluator.evaluate_run("resnet20", tmp_path / "last.ckpt", hflip_tta=True)


def test_the_manifest_refuses_flip_metrics_for_tasks_that_cannot_measure_them():
    from zoo._manifest import ManifestError, parse_manifest

    entry = json.loads((REPO / "weights_manifest.json").read_text(encoding="utf-8"))
    seg = next(e for e in entry if e["task"] == "segmentation")
    seg["metrics"] = {**seg["metrics"], "miou_hflip": 50.0}
    with pytest.raises(ManifestError, match="test-time flips"):
        parse_manifest([seg])

"""ONNX round trips: a classifier, a segmentation model and the deformable detector, small inputs."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

import zoo
from zoo import export
from zoo.cli import main
from zoo.predict import ModelCard, eval_transforms_for, read_image
from zoo.weights import find_weights

from .conftest import REPO

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

BCCD = REPO / "datasets/bccd/BCCD/JPEGImages"


def test_classifier_round_trip_with_a_dynamic_batch(tmp_path):
    model = zoo.create_model("resnet20.fashion_mnist", pretrained=True).eval()
    path = tmp_path / "resnet20.onnx"
    assert export.export_onnx(model, "classification", torch.randn(2, 1, 28, 28), path) == ("logits",)
    for batch in (1, 5):  # exported with 2: other batch sizes run too
        report = export.check_onnx(model, "classification", path, torch.randn(batch, 1, 28, 28))
        assert report.ok, report
    (logits,) = export.run_onnxruntime(path, torch.randn(3, 1, 28, 28))
    assert logits.shape == (3, 10)


def test_segmentation_logits_at_the_input_size(tmp_path):
    torch.manual_seed(0)
    model = zoo.create_model("fcn_resnet18").eval()
    path = tmp_path / "fcn.onnx"
    export.export_onnx(model, "segmentation", torch.randn(2, 3, 64, 96), path)
    x = torch.randn(3, 3, 64, 96)
    (logits,) = export.run_onnxruntime(path, x)
    assert logits.shape == (3, model.num_classes, 64, 96)
    assert export.check_onnx(model, "segmentation", path, x).ok


def bccd_batch(size=(240, 320), n=2):
    card = ModelCard.from_weights(find_weights("fcos_dcn_resnet18.bccd"))
    normalise = eval_transforms_for(card)
    files = sorted(BCCD.glob("*.jpg"))[:n]
    return torch.stack([normalise(TF.resize(read_image(f, 3), list(size), antialias=True)) for f in files])


def test_dcn_detector_detections_after_nms_match_pytorch(tmp_path):
    model = zoo.create_model("fcos_dcn_resnet18.bccd", pretrained=True).eval()
    path = tmp_path / "fcos_dcn.onnx"
    x = bccd_batch()
    assert export.export_onnx(model, "detection", x, path) == export.DETECTION_OUTPUTS
    boxes, scores, labels, image = export.run_onnxruntime(path, x)
    with torch.no_grad():
        expected = model(x)
    # the same detections, image by image, in the same order (by decreasing score)
    for i, dets in enumerate(expected):
        mine = image == i
        assert mine.sum() == len(dets["boxes"]) > 0
        assert (labels[mine] == dets["labels"].numpy()).all()
        assert torch.allclose(torch.from_numpy(boxes[mine]), dets["boxes"], atol=1e-3)
        assert torch.allclose(torch.from_numpy(scores[mine]), dets["scores"], atol=1e-4)
    assert export.check_onnx(model, "detection", path, x).ok


def test_nms_op_is_torchvisions_per_class():
    from torchvision.ops import batched_nms

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 50, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 10 + torch.rand(2, 50, 2, generator=g) * 30], dim=-1)
    scores = torch.rand(2, 3, 50, generator=g)
    kept = torch.ops.zoo.nms(boxes, scores, 100, 0.5, 0.2)
    for b in range(2):
        labels = torch.arange(3).repeat_interleave(50)
        flat_scores, flat_boxes = scores[b].flatten(), boxes[b].repeat(3, 1)
        ok = flat_scores > 0.2
        keep = batched_nms(flat_boxes[ok], flat_scores[ok], labels[ok], 0.5)
        expected = {(int(c), int(i) % 50) for c, i in zip(labels[ok][keep], ok.nonzero()[:, 0][keep])}
        assert {(int(c), int(i)) for bb, c, i in kept.tolist() if bb == b} == expected


def test_cli_export_prints_the_difference_and_fails_beyond_the_tolerance(tmp_path, capsys):
    image = sorted(BCCD.glob("*.jpg"))[0]
    out = tmp_path / "r.onnx"
    assert (
        main(
            ["export", "resnet20.fashion_mnist", "--format", "onnx", "--out", str(out), "--image", str(image)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "max |difference|" in printed and out.is_file()
    assert main(["export", "resnet20.fashion_mnist", "--out", str(out), "--tolerance", "-1"]) == 1
    assert "differs from PyTorch" in capsys.readouterr().err


def test_bench_onnxruntime_rows():
    from zoo import bench

    speeds = bench.onnx_inference("resnet20", (1, 3), repeats=1)
    assert len(speeds) == 2 and all(s is not None and s > 0 for s in speeds)

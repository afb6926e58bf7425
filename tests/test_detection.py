"""FCOS detectors, the BCCD loader and the detection task.

Inputs stay small (64-128 px, batch 2); the BCCD tests read the real files when
``$ZOO_DATA_DIR/bccd`` exists and skip otherwise.
"""

from __future__ import annotations

import math

import pytest
import torch

import zoo
from zoo import create_model
from zoo.config import RunConfig
from zoo.data import DataFileError, DatasetNotFoundError, SampleLoader, dataset_info
from zoo.data import bccd as bccd_module
from zoo.data.bccd import BCCDDataset, parse_annotation
from zoo.data.detection import DetectionTransform, collate_detection
from zoo.engine import evaluate, get_task
from zoo.layers import DeformConv2d
from zoo.models.fcos import assign_locations, deform_flags, level_locations

from .conftest import DATA_DIR

DETECTORS = zoo.list_models(task="detection")
BCCD_DIR = DATA_DIR / "bccd" / "BCCD" if DATA_DIR else None
needs_bccd = pytest.mark.skipif(
    BCCD_DIR is None or not BCCD_DIR.is_dir(),
    reason=f"BCCD not found at $ZOO_DATA_DIR/bccd/BCCD ({BCCD_DIR})",
)


def targets_one_box_and_empty() -> list[dict]:
    return [
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 70.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]


def test_detectors_registered():
    assert {"fcos_resnet18", "fcos_dcn_resnet18"} <= set(DETECTORS)
    for name in DETECTORS:
        entry = zoo._registry.get_entry(name)
        assert entry.input_size == (3, 480, 640) and entry.family == "fcos"


@pytest.mark.parametrize("name", DETECTORS)
def test_forward_backward_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    assert model.num_classes == 3
    losses = model(torch.randn(2, 3, 96, 128), targets_one_box_and_empty())
    assert set(losses) == {"loss_cls", "loss_box", "loss_ctr"}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"{name}: parameters without gradient: {missing}"
    if name == "fcos_dcn_resnet18":  # offsets start at zero, their predictor still learns
        predictor = model.head.cls_tower.convs[-1].offset_mask
        assert predictor.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", DETECTORS)
def test_images_without_boxes_give_a_finite_loss(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    losses = model(torch.randn(2, 3, 64, 64), [empty, empty])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box"] == 0 and losses["loss_ctr"] == 0 and losses["loss_cls"] > 0
    sum(losses.values()).backward()


@pytest.mark.parametrize("name", DETECTORS)
def test_eval_output_format(name):
    torch.manual_seed(0)
    # A threshold under the 0.01 prior so an untrained model returns detections to check.
    model = create_model(name, score_thresh=0.001, max_detections=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 96))
    assert isinstance(out, list) and len(out) == 2
    for det in out:
        assert set(det) == {"boxes", "scores", "labels"}
        k = len(det["scores"])
        assert 0 < k <= 7
        assert det["boxes"].shape == (k, 4) and det["labels"].shape == (k,)
        assert det["labels"].dtype == torch.int64 and det["labels"].max() < 3
        boxes = det["boxes"]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 96).all() and (boxes[:, 3] <= 64).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
        assert (det["scores"][:-1] >= det["scores"][1:]).all()


def test_dcn_backbone_variant_deforms_conv5_only_and_starts_as_the_plain_backbone():
    torch.manual_seed(0)
    dcn = create_model("fcos_dcnbackbone_resnet18").eval()
    assert dcn.head_conv == "conv" and not any(isinstance(m, DeformConv2d) for m in dcn.head.modules())
    deformed = [n for n, m in dcn.backbone.named_modules() if isinstance(m, DeformConv2d)]
    assert deformed == ["layer4.0.conv1", "layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2"]
    plain = create_model("fcos_resnet18").eval()
    extra = set(dcn.state_dict()) - set(plain.state_dict())
    assert set(plain.state_dict()) <= set(dcn.state_dict()) and all(".offset_mask." in k for k in extra)
    # the plain backbone's weights (the DCN convs' weights included) and zero offsets: same maps
    own = dcn.backbone.state_dict()
    dcn.backbone.load_state_dict({**own, **plain.backbone.state_dict()})
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(dcn.backbone(x), plain.backbone(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    conv345 = create_model("fcos_resnet18", backbone_deform_stages=(2, 3, 4))
    layers = {n.split(".")[0] for n, m in conv345.backbone.named_modules() if isinstance(m, DeformConv2d)}
    assert layers == {"layer2", "layer3", "layer4"}


def test_train_mode_without_targets_is_an_error():
    model = create_model("fcos_resnet18").train()
    with pytest.raises(ValueError, match="targets"):
        model(torch.randn(1, 3, 64, 64))


def test_reset_classifier_and_features_only():
    model = create_model("fcos_resnet18", num_classes=5)
    assert model.get_classifier().out_channels == 5
    assert model.first_conv_name == "backbone.conv1" and model.classifier_name == "head.cls_logits"
    model.reset_classifier(2)
    assert model.num_classes == 2 and model.get_classifier().out_channels == 2
    assert f"{model.classifier_name}.weight" in model.state_dict()
    # the focal-loss prior: every class starts at probability 0.01
    assert torch.allclose(model.get_classifier().bias.sigmoid(), torch.full((2,), 0.01))
    feats = create_model("fcos_resnet18", features_only=True).eval()(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [8, 4, 2] and all(f.shape[1] == 128 for f in feats)


# -- target assignment, by hand ---------------------------------------------------------------------


def one_level(size: int, stride: int, low: float, high: float):
    points = level_locations(size // stride, size // stride, stride)
    strides = torch.full((len(points),), float(stride))
    ranges = torch.tensor([[low, high]]).expand(len(points), 2)
    return points, strides, ranges


def positives(matched: torch.Tensor) -> set[int]:
    return set((matched >= 0).nonzero().flatten().tolist())


def test_assignment_by_hand():
    # Stride 8 on a 32x32 image: locations at x, y in {4, 12, 20, 28}; index = 4 * row + col.
    points, strides, ranges = one_level(32, 8, 0, math.inf)
    assert points[1].tolist() == [12.0, 4.0] and points[5].tolist() == [12.0, 12.0]
    box = torch.tensor([[2.0, 2.0, 22.0, 14.0]])  # centre (12, 8)
    # Inside the box: x in {4, 12, 20}, y in {4, 12}.
    assert positives(assign_locations(points, strides, ranges, box, None)) == {0, 1, 2, 4, 5, 6}
    # Within 1 stride (8 px, strictly) of the centre: x = 12 only.
    assert positives(assign_locations(points, strides, ranges, box, 1.0)) == {1, 5}
    # At (12, 4) and (12, 12) the largest distance is 10: in [0, 10], not in [0, 9] or [11, inf].
    _, _, r10 = one_level(32, 8, 0, 10)
    _, _, r9 = one_level(32, 8, 0, 9)
    _, _, r11 = one_level(32, 8, 11, math.inf)
    assert positives(assign_locations(points, strides, r10, box, 1.0)) == {1, 5}
    assert positives(assign_locations(points, strides, r9, box, 1.0)) == set()
    assert positives(assign_locations(points, strides, r11, box, 1.0)) == set()
    assert positives(assign_locations(points, strides, ranges, torch.zeros(0, 4), 1.0)) == set()


def test_assignment_prefers_the_smallest_box():
    points, strides, ranges = one_level(32, 8, 0, math.inf)
    big, small = [0.0, 0.0, 32.0, 32.0], [8.0, 0.0, 24.0, 16.0]
    matched = assign_locations(points, strides, ranges, torch.tensor([big, small]), None)
    # The small box holds x in {12, 20}, y = 4, 12: indices 1, 2, 5, 6; every other location is big's.
    assert [i for i, m in enumerate(matched.tolist()) if m == 1] == [1, 2, 5, 6]
    assert all(m == 0 for i, m in enumerate(matched.tolist()) if i not in (1, 2, 5, 6))


def test_assignment_on_the_model_levels():
    # A 30 px box (largest distance <= 40) goes to P3 only; a 200 px one (> 80) to P5 only.
    model = create_model("fcos_resnet18")
    features = model.forward_intermediates(torch.zeros(1, 3, 256, 256))
    points, strides, ranges = model.locations(features)
    small = assign_locations(points, strides, ranges, torch.tensor([[100.0, 100.0, 130.0, 130.0]]))
    large = assign_locations(points, strides, ranges, torch.tensor([[20.0, 20.0, 220.0, 220.0]]))
    assert set(strides[small >= 0].tolist()) == {8.0}
    assert set(strides[large >= 0].tolist()) == {32.0}


# -- the deformable head -------------------------------------------------------------------------------


@pytest.mark.parametrize("deform_convs", [1, 2])
def test_deform_head_with_zero_offsets_equals_the_plain_head(deform_convs):
    torch.manual_seed(0)
    plain = create_model("fcos_resnet18").eval()
    deform = create_model("fcos_dcn_resnet18", deform_convs=deform_convs).eval()
    missing, unexpected = deform.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(".offset_mask." in k for k in missing)
    # the last deform_convs convs of each of the two towers
    assert sum(isinstance(m, DeformConv2d) for m in deform.modules()) == 2 * deform_convs
    for tower in (deform.head.cls_tower, deform.head.box_tower):
        assert isinstance(tower.convs[-1], DeformConv2d)
    for m in deform.modules():  # zero offsets, unit masks, as initialised
        if isinstance(m, DeformConv2d):
            assert not m.offset_mask.weight.any() and not m.offset_mask.bias.any()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        a = plain.head(plain.forward_intermediates(x))
        b = deform.head(deform.forward_intermediates(x))
    for maps_a, maps_b in zip(a, b):
        for ma, mb in zip(maps_a, maps_b):
            torch.testing.assert_close(ma, mb, atol=1e-4, rtol=1e-4)


def test_deform_head_runs_under_bf16_autocast_and_channels_last():
    torch.manual_seed(0)
    model = create_model("fcos_dcn_resnet18").train().to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(x, targets_one_box_and_empty()[:1])
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())


def test_sampling_locations_start_on_the_regular_grid():
    model = create_model("fcos_dcn_resnet18").eval()
    points = model.sampling_locations(torch.randn(3, 64, 64), level=0, row=3, col=4)
    # Level 0 has stride 8: the location is at (4 * 8 + 4, 3 * 8 + 4) = (36, 28), taps 8 px apart.
    expected = torch.tensor([[36.0 + 8 * dx, 28.0 + 8 * dy] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    torch.testing.assert_close(points["grid"], expected)
    torch.testing.assert_close(points["deformed"], expected)
    torch.testing.assert_close(points["mask"], torch.ones(9))
    with pytest.raises(ValueError, match="deform"):
        create_model("fcos_resnet18").sampling_locations(torch.randn(3, 64, 64), 0, 0, 0)


def test_sampling_locations_follow_the_learned_offsets():
    model = create_model("fcos_dcn_resnet18").eval()
    conv = model.head.cls_tower.convs[-1]
    with torch.no_grad():
        conv.offset_mask.bias[0:18:2] = 2.0  # every tap: dy = +2 feature cells
        conv.offset_mask.bias[1:18:2] = -1.0  # dx = -1
    points = model.sampling_locations(torch.randn(3, 64, 64), level=0, row=3, col=4)
    shift = torch.tensor([-1.0 * 8, 2.0 * 8])  # stride 8: (dx, dy) in pixels
    torch.testing.assert_close(points["deformed"], points["grid"] + shift)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(head_conv="dcn"), "head_conv must be"),
        (dict(head_conv="deform", deform_convs=0), "deform_convs must be in 1..num_convs=2"),
        (dict(head_conv="deform", deform_convs=3), "deform_convs must be in 1..num_convs=2"),
    ],
)
def test_bad_head_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        deform_flags(num_convs=2, **{"deform_convs": 1, **kwargs})


# -- BCCD -------------------------------------------------------------------------------------------


@needs_bccd
def test_bccd_splits_and_boxes():
    root = bccd_module.find_root(str(DATA_DIR), download=False)
    counts = {s: len(bccd_module._read_ids(root, s)) for s in bccd_module.SPLITS}
    assert counts == {"train": 205, "val": 87, "trainval": 292, "test": 72}
    kept, dropped, per_class = 0, {}, torch.zeros(3, dtype=torch.long)
    for xml in sorted((root / "Annotations").glob("*.xml")):
        boxes, labels, bad = parse_annotation(xml)
        kept += len(boxes)
        per_class += torch.bincount(labels, minlength=3)
        if bad:
            dropped[xml.stem] = bad
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes >= 0).all() and (boxes[:, 2] <= 640).all() and (boxes[:, 3] <= 480).all()
    assert kept == 4888 - 2
    assert per_class.tolist() == [4155 - 2, 372, 361]
    assert dropped == {
        "BloodImage_00338": [[504.0, 337.0, 504.0, 337.0]],
        "BloodImage_00343": [[181.0, 329.0, 181.0, 329.0]],
    }


@needs_bccd
def test_bccd_warns_about_the_dropped_boxes():
    with pytest.warns(UserWarning, match="BloodImage_00338") as record:
        data = BCCDDataset("val", str(DATA_DIR), download=False)
    (message,) = [str(w.message) for w in record if "BCCD" in str(w.message)]
    assert "504.0, 337.0, 504.0, 337.0" in message
    assert len(data) == 87
    image, target = data[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 480, 640)
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    # VOC's 1-based inclusive corners: the first box of the file, shifted by one at the top-left.
    boxes, _, _ = parse_annotation(data.root / "Annotations" / f"{data.ids[0]}.xml")
    torch.testing.assert_close(target["boxes"], boxes)


def test_bccd_absent_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DatasetNotFoundError) as err:
        BCCDDataset("train", str(tmp_path / "mine"), download=False)  # test ships in datasets/
    message = str(err.value)
    assert str(tmp_path / "mine" / "bccd" / "BCCD") in message and "BCCD_Dataset" in message


def test_bccd_parses_voc_as_zero_based_xyxy(tmp_path):
    xml = tmp_path / "a.xml"
    xml.write_text(
        "<annotation><size><width>640</width><height>480</height></size>"
        "<object><name>WBC</name><bndbox><xmin>1</xmin><ymin>11</ymin><xmax>100</xmax><ymax>50</ymax></bndbox></object>"
        "<object><name>RBC</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>5</xmax><ymax>9</ymax></bndbox></object>"
        "</annotation>"
    )
    boxes, labels, dropped = parse_annotation(xml)
    assert boxes.tolist() == [[0.0, 10.0, 100.0, 50.0]]  # 100 px wide, 40 px high
    assert labels.tolist() == [1] and dropped == [[5.0, 5.0, 5.0, 9.0]]


def test_train_transform_keeps_boxes_on_their_pixels():
    image = torch.zeros(3, 120, 160, dtype=torch.uint8)
    image[:, 30:80, 40:100] = 255  # pixels 40..99 x 30..79: the box [40, 30, 100, 80]
    target = {"boxes": torch.tensor([[40.0, 30.0, 100.0, 80.0]]), "labels": torch.tensor([2])}
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    transform = DetectionTransform(
        mean, std, train=True, crop_size=(96, 128), scale_range=(0.75, 1.25), base_short_side=120
    )
    for seed in range(12):
        torch.manual_seed(seed)
        out, t = transform((image, target))
        assert out.shape == (3, 96, 128) and out.dtype == torch.float32
        bright = (out[0] * 0.5 + 0.5) > 0.9
        if len(t["boxes"]) == 0:  # cropped away (or to a sliver): little of the rectangle is left
            assert bright.sum() < 4 * 128
            continue
        assert t["labels"].tolist() == [2]
        x1, y1, x2, y2 = t["boxes"][0].tolist()
        ys, xs = bright.nonzero(as_tuple=True)
        # every bright pixel inside the box (1 px for interpolation), and the box filled with them
        assert xs.min() >= x1 - 1 and xs.max() + 1 <= x2 + 1 and ys.min() >= y1 - 1 and ys.max() + 1 <= y2 + 1
        assert bright.sum() >= 0.8 * (x2 - x1) * (y2 - y1)


def test_eval_transform_only_normalises():
    image = torch.full((3, 48, 64), 255, dtype=torch.uint8)
    target = {"boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0]]), "labels": torch.tensor([0])}
    out, t = DetectionTransform((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))((image, target))
    torch.testing.assert_close(out, torch.full((3, 48, 64), 2.0))
    assert t["boxes"].tolist() == [[1.0, 2.0, 30.0, 40.0]] and type(t["boxes"]) is torch.Tensor


# -- the task ------------------------------------------------------------------------------------------


class TinyDetectionSet:
    """Two 64x64 images: one box, and none."""

    def __init__(self):
        self.samples = [
            (torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8), targets_one_box_and_empty()[0]),
            (torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8), targets_one_box_and_empty()[1]),
        ]

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return self.samples[i]


def test_detection_task_loss_and_eval_step():
    torch.manual_seed(0)
    task = get_task("detection")
    assert task.primary_metric == "map_50" and task.tolerance == 0.005
    loader = SampleLoader(
        TinyDetectionSet(), 2, False, collate_detection, transform=DetectionTransform((0.5,) * 3, (0.25,) * 3)
    )
    batch = task.to_device(next(iter(loader)), torch.device("cpu"), channels_last=True)
    assert task.batch_size(batch) == 2
    model = create_model("fcos_resnet18", score_thresh=0.001).train()
    loss = task.loss(model, batch, RunConfig())
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    result = evaluate(model, loader, task, dataset_info("bccd"))
    assert model.training  # evaluate restores the mode
    assert set(result) >= {"map", "map_50", "map_75", "per_class_ap", "num_samples"}
    assert all(0.0 <= result[k] <= 1.0 for k in ("map", "map_50", "map_75"))
    assert set(result["per_class_ap"]) == {"RBC", "WBC", "Platelets"}
    assert result["num_samples"] == 2


@needs_bccd
def test_detection_eval_loader_on_bccd():
    loader, info = get_task("detection").build_eval_loader("bccd", "test", str(DATA_DIR), 2)
    assert info.num_classes == 3 and info.input_size == (480, 640) and len(loader.dataset) == 72
    images, targets = next(iter(loader))
    assert images.shape == (2, 3, 480, 640) and len(targets) == 2
    assert len(loader) == 36


# -- unreadable files name themselves -------------------------------------------------------------

VOC = (
    "<annotation>{size}<object><name>WBC</name><bndbox><xmin>{xmin}</xmin><ymin>11</ymin>"
    "<xmax>20</xmax><ymax>50</ymax></bndbox></object></annotation>"
)
SIZE = "<size><width>32</width><height>16</height></size>"


@pytest.mark.parametrize(
    "text, message",
    [
        (VOC.format(size=SIZE, xmin=1)[:-20], "malformed XML"),
        (VOC.format(size="", xmin=1), "no <size><width> element"),
        (VOC.format(size=SIZE, xmin="abc"), "<xmin> is 'abc', not a number"),
    ],
)
def test_a_bad_annotation_names_its_file(tmp_path, text, message):
    xml = tmp_path / "bad.xml"
    xml.write_text(text)
    with pytest.raises(DataFileError, match=message) as err:
        parse_annotation(xml)
    assert str(xml) in str(err.value)


def tiny_voc(root, jpeg_bytes: bytes, trust, size: str = SIZE):
    """A one-image BCCD-layout folder, whose files zoo's SHA256 list is made to hold."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    for split in bccd_module.SPLITS:
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("im\n")
    (root / "Annotations" / "im.xml").write_text(VOC.format(size=size, xmin=1))
    (root / "JPEGImages" / "im.jpg").write_bytes(jpeg_bytes)
    trust("bccd", root)
    return root / "JPEGImages" / "im.jpg"


def jpeg(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_a_truncated_jpeg_names_its_file(tmp_path, trust_files):
    path = tiny_voc(tmp_path / "BCCD", jpeg(32, 16)[:300], trust_files)
    with pytest.raises(DataFileError, match="cannot read the image") as err:
        BCCDDataset("test", str(tmp_path), download=False)
    assert str(path) in str(err.value)


def test_an_image_of_another_size_than_its_annotation_names_both(tmp_path, trust_files):
    path = tiny_voc(tmp_path / "BCCD", jpeg(40, 16), trust_files)
    with pytest.raises(DataFileError, match="is 40x16 .* says 32x16") as err:
        BCCDDataset("test", str(tmp_path), download=False)
    assert str(path) in str(err.value)
    assert len(BCCDDataset("test", str(tmp_path := tiny_voc_ok(tmp_path, trust_files)), download=False)) == 1


def tiny_voc_ok(tmp_path, trust):
    tiny_voc(tmp_path / "ok" / "BCCD", jpeg(32, 16), trust)
    return tmp_path / "ok"

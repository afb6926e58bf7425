"""Segmentation: DeepLabV3 / FCN models, the CamVid data path, SegmentationTask and its metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision import tv_tensors
from torchvision.io import decode_image, read_file

import zoo
from zoo._registry import get_entry
from zoo.config import DataConfig, RunConfig
from zoo.data import DataFileError, DatasetNotFoundError, SampleLoader, camvid, dataset_info, segmentation
from zoo.engine import get_task

from .conftest import randomize_batchnorm, serve_directory

REPO_ROOT = Path(__file__).resolve().parents[1]
CAMVID = dataset_info("camvid")


def train_transform(crop_size, scale_range, base_size):
    """CamVid's training transform at another base size (small images keep the tests fast)."""
    return segmentation.train_transform(
        crop_size, scale_range, CAMVID.mean, CAMVID.std, base_size, CAMVID.ignore_index
    )


SEGMENTERS = zoo.list_models(task="segmentation")


def camvid_root() -> Path | None:
    try:
        return camvid.find_root()
    except DatasetNotFoundError:
        return None


needs_camvid = pytest.mark.skipif(
    camvid_root() is None,
    reason="CamVid not found (looked in $ZOO_DATA_DIR/camvid and the user cache); "
    "python -m zoo.data.camvid --download DIR fetches it",
)


# -- models ---------------------------------------------------------------------------------


def test_registered_segmenters():
    assert SEGMENTERS == [
        "deeplabv3_resnet18",
        "deeplabv3_resnet50",
        "deeplabv3plus_resnet18",
        "deeplabv3plus_resnet50",
        "fcn_resnet18",
        "fcn_resnet50",
    ]
    for name in SEGMENTERS:
        entry = get_entry(name)
        family = "fcn" if name.startswith("fcn") else "deeplab"
        assert entry.input_size == (3, 360, 480) and entry.family == family


@pytest.mark.parametrize("aux_loss", [False, True])
@pytest.mark.parametrize("name", SEGMENTERS)
def test_forward_backward(name, aux_loss):
    torch.manual_seed(0)
    model = zoo.create_model(name, num_classes=5, aux_loss=aux_loss)
    x = torch.randn(2, 3, 64, 96)
    out = model(x)
    assert sorted(out) == (["aux", "out"] if aux_loss else ["out"])
    for logits in out.values():
        assert logits.shape == (2, 5, 64, 96) and torch.isfinite(logits).all()
    sum(v.mean() for v in out.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing[:5]}"


def test_output_stride_and_aspp_rates():
    model = zoo.create_model("deeplabv3_resnet18", output_stride=16)
    assert model.feature_info[-1]["reduction"] == 16
    rates = [branch[0].dilation[0] for branch in model.classifier[0].convs[1:-1]]
    assert rates == [6, 12, 18]
    model = zoo.create_model("deeplabv3_resnet18", output_stride=8)
    rates = [branch[0].dilation[0] for branch in model.classifier[0].convs[1:-1]]
    assert rates == [12, 24, 36]
    assert zoo.create_model("fcn_resnet18").feature_info[-1]["reduction"] == 32
    with pytest.raises(ValueError, match="output_stride"):
        zoo.create_model("deeplabv3_resnet18", output_stride=32)


def test_reset_classifier_and_interface():
    model = zoo.create_model("deeplabv3_resnet18", aux_loss=True)
    assert model.num_classes == 11 and model.get_classifier().out_channels == 11
    model.reset_classifier(4)
    assert model.get_classifier().out_channels == 4 and model.aux_classifier[-1].out_channels == 4
    state = model.state_dict()
    assert (
        state[f"{model.classifier_name}.weight"].shape[0] == 4 and f"{model.first_conv_name}.weight" in state
    )
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    assert model(x)["out"].shape == (1, 4, 64, 64)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape[1] == 256
    with pytest.raises(NotImplementedError, match="features_only"):
        zoo.create_model("fcn_resnet18", features_only=True)
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(1, 1, 64, 64))


def test_deeplabv3plus_decoder_reads_the_stride_4_map():
    model = zoo.create_model("deeplabv3plus_resnet18", num_classes=5).eval()
    assert model.output_stride == 16  # the paper's default
    assert [(f["module"], f["reduction"]) for f in model.feature_info] == [("layer1", 4), ("layer4", 16)]
    head = model.classifier
    rates = [branch[0].dilation[0] for branch in head.aspp.convs[1:-1]]
    assert rates == [6, 12, 18]
    assert (head.low_project[0].in_channels, head.low_project[0].out_channels) == (64, 48)
    assert head.fuse[0].in_channels == 256 + 48 and head.fuse[3].out_channels == 256
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        features = model.forward_features(x)
        assert [f.shape[-2:] for f in features] == [(16, 24), (4, 6)]
        assert model.forward_head(features).shape == (1, 5, 16, 24)  # logits at stride 4
        assert model.forward_head(features, pre_logits=True).shape == (1, 256, 16, 24)
        # the decoder's low-level branch reaches the output
        before = model(x)["out"]
        torch.nn.init.zeros_(head.low_project[0].weight)
        assert not torch.allclose(model(x)["out"], before)
    dilated = zoo.create_model("deeplabv3plus_resnet18", output_stride=8, aux_loss=True)
    assert [f["reduction"] for f in dilated.feature_info] == [4, 8, 8]  # layer1, layer3 (aux), layer4
    assert [b[0].dilation[0] for b in dilated.classifier.aspp.convs[1:-1]] == [12, 24, 36]
    with pytest.raises(ValueError, match=r"deeplabv3plus takes output_stride in \[8, 16\], got 32"):
        zoo.create_model("deeplabv3plus_resnet18", output_stride=32)


def test_deeplabv3plus_reset_classifier_replaces_both_logit_convs():
    model = zoo.create_model("deeplabv3plus_resnet50", aux_loss=True)
    assert model.classifier_name == "classifier.logits" and model.get_classifier().out_channels == 11
    assert model.feature_info[0]["num_chs"] == 256  # resnet50's layer1
    model.reset_classifier(4)
    assert model.get_classifier() is model.classifier.logits and model.classifier.logits.out_channels == 4
    assert model.aux_classifier[-1].out_channels == 4
    assert model.state_dict()["classifier.logits.weight"].shape[:2] == (4, 256)


@pytest.mark.parametrize("aux_loss", [False, True])
def test_torchvision_deeplabv3_equivalence(aux_loss):
    from torchvision.models.segmentation import deeplabv3_resnet50 as tv_deeplabv3_resnet50

    torch.manual_seed(0)
    reference = tv_deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=aux_loss)
    with torch.no_grad():
        randomize_batchnorm(reference)
    ours = zoo.create_model("deeplabv3_resnet50", num_classes=21, aux_loss=aux_loss)
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.eval(), ours.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert sorted(actual) == sorted(expected)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-5)


# -- task: loss and metrics -------------------------------------------------------------------


class FixedLogits(torch.nn.Module):
    """A 'model' that returns the logits it was given, to test the loss and metrics alone."""

    def __init__(self, logits, aux=None):
        super().__init__()
        self.logits, self.aux = logits, aux

    def forward(self, x):
        return {"out": self.logits} if self.aux is None else {"out": self.logits, "aux": self.aux}


def test_void_pixels_are_ignored_by_loss_and_metrics():
    task, cfg = get_task("segmentation"), RunConfig(task="segmentation", data=DataConfig(dataset="camvid"))
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 11, (2, 8, 8), generator=gen)
    target[:, :3] = camvid.VOID
    logits = torch.randn(2, 11, 8, 8, generator=gen)
    # Change only what lies under void pixels: the predictions there and the void labels' meaning.
    other_logits = logits.clone()
    other_logits[:, :, :3] = torch.randn(2, 11, 3, 8, generator=gen) * 10
    x = torch.zeros(2, 3, 8, 8)

    def measure(logits_):
        loss = task.loss(FixedLogits(logits_), (x, target), cfg)
        metrics = task.metrics(CAMVID)
        task.eval_step(FixedLogits(logits_), (x, target), metrics)
        return loss, task.summarize(metrics.compute(), CAMVID)

    loss_a, summary_a = measure(logits)
    loss_b, summary_b = measure(other_logits)
    torch.testing.assert_close(loss_a, loss_b)
    assert summary_a == summary_b
    # The metric is computed on the non-void pixels only.
    valid = target != camvid.VOID
    expected_acc = (logits.argmax(1)[valid] == target[valid]).float().mean().item()
    assert summary_a["pixel_acc"] == pytest.approx(100 * expected_acc, abs=0.01)
    assert set(summary_a) == {"miou", "pixel_acc", "per_class_iou"}
    assert list(summary_a["per_class_iou"]) == list(camvid.CLASSES)


def test_perfect_prediction_scores_100_and_aux_and_weights_enter_the_loss():
    task, cfg = get_task("segmentation"), RunConfig(task="segmentation", data=DataConfig(dataset="camvid"))
    target = torch.arange(11).repeat(2, 4, 1)  # (2, 4, 11): every class present
    target[:, 0, :2] = camvid.VOID
    logits = torch.nn.functional.one_hot(target.clamp(max=10), 11).permute(0, 3, 1, 2).float() * 20
    metrics = task.metrics(CAMVID)
    task.eval_step(FixedLogits(logits), (None, target), metrics)
    summary = task.summarize(metrics.compute(), CAMVID)
    assert summary["miou"] == 100.0 and summary["pixel_acc"] == 100.0

    noisy = torch.randn(2, 11, 4, 11, generator=torch.Generator().manual_seed(1))
    batch = (None, target)
    main = task.loss(FixedLogits(noisy), batch, cfg)
    with_aux = task.loss(FixedLogits(noisy, aux=noisy), batch, cfg)
    torch.testing.assert_close(with_aux, 1.4 * main)
    cfg.data.class_weights = [1.0] * 10 + [5.0]
    assert not torch.isclose(task.loss(FixedLogits(noisy), batch, cfg), main)


def test_task_loss_on_a_real_model_backpropagates():
    task, cfg = get_task("segmentation"), RunConfig(task="segmentation", data=DataConfig(dataset="camvid"))
    model = zoo.create_model("fcn_resnet18", aux_loss=True)
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 12, (2, 64, 64))
    x, y = task.to_device((x, y), torch.device("cpu"), channels_last=True)
    assert x.is_contiguous(memory_format=torch.channels_last)
    loss = task.loss(model, (x, y), cfg)
    loss.backward()
    assert torch.isfinite(loss) and model.get_classifier().weight.grad is not None


# -- transforms and loader --------------------------------------------------------------------


def label_encoded_sample(
    h: int = 40, w: int = 50, block: int = 10
) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """Blocks of classes 0..10 whose image pixels encode the label (value 20 * label + 10)."""
    rows = torch.arange(h).div(block, rounding_mode="floor")
    cols = torch.arange(w).div(block, rounding_mode="floor")
    labels = ((rows[:, None] * 3 + cols[None, :]) % 11).to(torch.uint8)
    image = (labels * 20 + 10).expand(3, h, w).clone()
    return tv_tensors.Image(image), tv_tensors.Mask(labels)


def decode_labels(image: torch.Tensor) -> torch.Tensor:
    """Invert the encoding: normalised image -> label per pixel (channel 0)."""
    pixel = image[0] * camvid.STD[0] + camvid.MEAN[0]
    return ((pixel * 255 - 10) / 20).round().long()


def test_train_transform_pads_with_void_and_keeps_alignment():
    torch.manual_seed(0)
    # No rescaling: a 40x50 sample cropped to 64x64 must be padded; labels stay exact.
    transform = train_transform((64, 64), (1.0, 1.0), base_size=(40, 50))
    image, mask = transform(label_encoded_sample())
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert mask.shape == (64, 64) and mask.dtype == torch.uint8
    padding = mask == camvid.VOID
    assert padding.sum() == 64 * 64 - 40 * 50
    pixel = image[0] * camvid.STD[0] + camvid.MEAN[0]
    assert pixel[padding].abs().max() < 1e-5  # padded image is 0
    assert torch.equal(decode_labels(image)[~padding], mask[~padding].long())


def test_train_transform_with_random_scale_stays_aligned():
    transform = train_transform((64, 80), (0.5, 2.0), base_size=(80, 100))
    for seed in range(4):
        torch.manual_seed(seed)
        image, mask = transform(label_encoded_sample(80, 100, block=20))
        assert image.shape == (3, 64, 80) and mask.shape == (64, 80)
        valid = mask != camvid.VOID
        agree = (decode_labels(image)[valid] == mask[valid].long()).float().mean()
        assert agree > 0.9  # only pixels at block edges, blended by bilinear resizing, may differ


def test_sample_loader_is_deterministic_for_the_seg_transform():
    samples = [label_encoded_sample() for _ in range(4)]
    transform = train_transform((32, 32), (0.5, 2.0), base_size=(40, 50))

    def batches(seed):
        loader = SampleLoader(samples, 2, True, segmentation.collate, seed=seed, transform=transform)
        return list(loader.batches(epoch=1))

    first, again, other = batches(0), batches(0), batches(1)
    assert len(first) == 2
    for (xa, ya), (xb, yb) in zip(first, again):
        assert xa.shape == (2, 3, 32, 32) and xa.dtype == torch.float32
        assert ya.shape == (2, 32, 32) and ya.dtype == torch.int64
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert any(not torch.equal(xa, xb) for (xa, _), (xb, _) in zip(first, other))


def test_missing_camvid_error_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DatasetNotFoundError) as err:
        camvid.CamVid("test", str(tmp_path / "arg"))
    message = str(err.value)
    for place in ("arg", "env", "cache"):
        assert str(tmp_path) in message and place in message
    assert "--download" in message


def test_download_fetches_lists_images_and_masks(tmp_path, trust_files):
    """Against a local HTTP server holding a tiny fake CamVid folder, never the internet."""
    from torchvision.io import encode_png

    source = tmp_path / "source"
    for split in ("train", "val", "test"):
        (source / split).mkdir(parents=True)
        (source / f"{split}annot").mkdir()
        image, mask = label_encoded_sample(8, 12)
        (source / split / "a.png").write_bytes(encode_png(image).numpy().tobytes())
        (source / f"{split}annot" / "a.png").write_bytes(encode_png(mask[None]).numpy().tobytes())
        line = f"{camvid.LIST_PREFIX}{split}/a.png {camvid.LIST_PREFIX}{split}annot/a.png\n"
        (source / f"{split}.txt").write_text(line)

    trust_files("camvid", source)  # the fake stands for the real CamVid
    with serve_directory(source) as url:
        root = camvid.download(str(tmp_path / "data"), timeout=10, base_url=url)
    assert root == tmp_path / "data" / "camvid"
    data = camvid.CamVid("trainval", str(tmp_path / "data"))
    image, mask = label_encoded_sample(8, 12)
    assert len(data) == 2 and torch.equal(data.images[0], image) and torch.equal(data.masks[1], mask)


# -- the real files ---------------------------------------------------------------------------


@needs_camvid
def test_camvid_lists_and_a_few_files():
    root = camvid_root()
    counts = {s: len(camvid.read_split_list(root, s)) for s in ("train", "val", "test", "trainval")}
    assert counts == {"train": 367, "val": 101, "test": 233, "trainval": 468}
    # Decode a few files only (the full splits are decoded at training time).
    for image_path, mask_path in camvid.read_split_list(root, "test")[::80]:
        image, mask = camvid.decode_pair(image_path, mask_path)
        assert image.shape == (3, 360, 480) and image.dtype == torch.uint8
        assert mask.shape == (360, 480) and int(mask.max()) <= camvid.VOID


def test_save_segmentation_overlays(tmp_path):
    from zoo.viz import save_segmentation_overlays

    model = zoo.create_model("fcn_resnet18")
    batches = [(torch.randn(2, 3, 32, 48), torch.randint(0, 12, (2, 32, 48))) for _ in range(2)]
    info = CAMVID
    path = save_segmentation_overlays(model, batches, info, 3, tmp_path / "overlays.png")
    grid = decode_image(read_file(str(path)))
    assert grid.shape[0] == 3 and grid.shape[1] > 3 * 32 and grid.shape[2] > 3 * 48  # 3 rows of 3


def test_a_truncated_png_names_its_file(tmp_path):
    from torchvision.io import encode_png

    image, mask = label_encoded_sample(8, 12)
    image_path, mask_path = tmp_path / "a.png", tmp_path / "a_L.png"
    image_path.write_bytes(encode_png(image).numpy().tobytes()[:40])
    mask_path.write_bytes(encode_png(mask[None]).numpy().tobytes())
    with pytest.raises(DataFileError, match="cannot decode") as err:
        camvid.decode_pair(image_path, mask_path)
    assert str(image_path) in str(err.value)

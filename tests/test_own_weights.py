"""Your own weights through every command: a run trained here, with ``--checkpoint``, in
``zoo predict``, ``zoo explain`` and ``zoo export``; architectures without published weights;
and pictures of any size brought to weights trained on squashed photos without cropping."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision.transforms.v2 import functional as TF

from zoo.cli import main
from zoo.config import load_config
from zoo.data import dataset_info, imagenette
from zoo.engine import load_run, train
from zoo.predict import ModelCard, Preprocess, read_image

from .conftest import REPO, jpeg_bytes, random_state, write_tiny_imagenette

CONFIG = REPO / "configs/fashion_mnist/resnet20.yaml"
TINY = [
    "data.train_split=test",  # the shipped split: no download
    "data.batch_size=16",
    "train.amp_bf16=false",
    "train.channels_last=false",
    "train.eval_every_epochs=0",
    "train.ema=false",
    "train.max_steps=2",
    "schedule.warmup_epochs=0",
]
FASHION = dataset_info("fashion_mnist")


def tiny_run(folder, *overrides, config=CONFIG):
    """A run of a few steps in ``folder``; its ``model.safetensors``."""
    train(load_config(config, [*TINY, f"train.out_dir={folder}", *overrides]))
    return folder / "model.safetensors"


@pytest.fixture(scope="module")
def resnet20_run(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("run") / "try")


@pytest.fixture(scope="module")
def resnet32_run(tmp_path_factory):
    """An architecture without published weights, trained with a non-default argument (a
    state dict alone could not say it is GroupNorm)."""
    return tiny_run(
        tmp_path_factory.mktemp("run") / "r32", "model.name=resnet32", "model.args.norm=groupnorm"
    )


def grey_png(path, size=(28, 28), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 255, size, dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def expected_probs(model, image: torch.Tensor, mean, std) -> torch.Tensor:
    """What the model gives for an image already at its input size, normalised by ``mean``/``std``."""
    x = TF.normalize(image.float()[None] / 255, list(mean), list(std))
    with torch.no_grad():
        return model.eval()(x)[0].softmax(0)


def test_predict_runs_a_run_of_a_published_architecture(resnet20_run, tmp_path, capsys):
    png = grey_png(tmp_path / "item.png")
    assert main(["predict", "resnet20", str(png), "--checkpoint", str(resnet20_run), "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["model"] == "resnet20" and doc["task"] == "classification"
    (record,) = doc["images"]
    assert {t["label"] for t in record["top"]} <= set(FASHION.classes)  # the run's class names
    # the run's normalisation (Fashion-MNIST's mean/std), not an assumed 0.5
    probs = expected_probs(load_run(resnet20_run).model, read_image(png, 1), FASHION.mean, FASHION.std)
    best = int(probs.argmax())
    assert record["top"][0] == {
        "label": FASHION.classes[best],
        "index": best,
        "prob": round(float(probs[best]), 4),
    }
    assert "note" not in captured.err


def test_explain_runs_a_run(resnet20_run, tmp_path, capsys):
    png = grey_png(tmp_path / "item.png")
    out = tmp_path / "out"
    assert (
        main(
            ["explain", "resnet20", str(png), "--checkpoint", str(resnet20_run), "--out", str(out), "--json"]
        )
        == 0
    )
    (record,) = json.loads(capsys.readouterr().out)["images"]
    assert record["target"] in FASHION.classes
    assert (out / "item_gradcam.png").is_file()


def test_export_runs_a_run(resnet20_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from zoo import export

    path = tmp_path / "run.onnx"
    assert main(["export", "resnet20", "--checkpoint", str(resnet20_run), "--out", str(path)]) == 0
    assert "wrote" in capsys.readouterr().out
    x = torch.randn(3, 1, 28, 28)
    (logits,) = export.run_onnxruntime(path, x)
    with torch.no_grad():
        expected = load_run(resnet20_run).model.eval()(x)
    assert torch.allclose(torch.from_numpy(logits), expected, atol=1e-4)


def test_naming_a_published_weight_still_checks_the_file(resnet20_run, tmp_path, capsys):
    png = grey_png(tmp_path / "item.png")
    assert main(["predict", "resnet20.fashion_mnist", str(png), "--checkpoint", str(resnet20_run)]) == 2
    err = capsys.readouterr().err
    assert "is not the file the manifest records for resnet20.fashion_mnist" in err
    assert f"name the architecture alone: resnet20 --checkpoint {resnet20_run}" in err


def test_a_published_file_given_as_a_checkpoint_is_that_weight(tmp_path, capsys):
    published = REPO / "weights/resnet20.fashion_mnist.safetensors"
    if not published.is_file():
        pytest.skip("the published resnet20.fashion_mnist file is not in weights/")
    png = grey_png(tmp_path / "item.png")
    assert main(["predict", "resnet20", str(png), "--checkpoint", str(published), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "resnet20.fashion_mnist"


def test_a_run_of_an_architecture_without_weights(resnet32_run, tmp_path, capsys):
    png = grey_png(tmp_path / "item.png", size=(40, 30))  # another size: resized and cropped
    assert main(["predict", "resnet32", str(png), "--checkpoint", str(resnet32_run), "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)["images"]
    assert record["size"] == [40, 30] and record["top"][0]["label"] in FASHION.classes
    out = tmp_path / "out"
    assert main(["explain", "resnet32", str(png), "--checkpoint", str(resnet32_run), "--out", str(out)]) == 0
    assert (out / "item_gradcam.png").is_file()
    # the run's file names its architecture: another one is refused, by name
    assert main(["predict", "resnet20", str(png), "--checkpoint", str(resnet32_run)]) == 2
    assert f"{resnet32_run} holds a resnet32, not a resnet20" in capsys.readouterr().err


def test_export_an_architecture_without_weights(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = tmp_path / "r32.onnx"
    assert main(["export", "resnet32", "--out", str(path)]) == 0
    captured = capsys.readouterr()
    assert "randomly initialised" in captured.err
    assert "exporting resnet32 (classification) at 32x32" in captured.out and path.is_file()


def test_a_bare_state_dict_is_loaded_with_assumed_normalisation(tmp_path, capsys):
    state = tmp_path / "r32.safetensors"  # no run metadata: not written by train.py
    save_file(random_state("resnet32", in_chans=1), state)
    png = grey_png(tmp_path / "item.png", size=(32, 32))
    assert main(["predict", "resnet32", str(png), "--checkpoint", str(state), "--json"]) == 0
    captured = capsys.readouterr()
    assert "mean/std 0.5 are assumed" in captured.err
    (record,) = json.loads(captured.out)["images"]
    assert record["top"][0]["label"].startswith("class")


# -- weights trained on squashed photos --------------------------------------------------------


def photo(path, size=(60, 100), seed=0):
    """An RGB photo that is not square (H, W = ``size``)."""
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return path


def test_squashed_weights_resize_a_photo_without_cropping(weight_store, tmp_path, capsys):
    w, state = weight_store.add("resnet20.squash", input_size=[32, 32], fit="squash", interpolation="bicubic")
    card = ModelCard.from_weights(w)
    image = read_image(photo(tmp_path / "photo.jpg"), 3)
    resized = Preprocess(card).resize(image)
    mode = TF.InterpolationMode.BICUBIC
    assert torch.equal(resized, TF.resize(image, [32, 32], interpolation=mode, antialias=True))
    assert main(["predict", "resnet20.squash", str(tmp_path / "photo.jpg"), "--json", "--topk", "1"]) == 0
    (record,) = json.loads(capsys.readouterr().out)["images"]
    model = load_state("resnet20", state)
    probs = expected_probs(model, resized, w.input.mean, w.input.std)
    assert record["size"] == [60, 100] and record["top"][0]["index"] == int(probs.argmax())
    assert record["top"][0]["prob"] == round(float(probs.max()), 4)
    assert (
        main(["explain", "resnet20.squash", str(tmp_path / "photo.jpg"), "--out", str(tmp_path / "out")]) == 0
    )


def load_state(name, state):
    import zoo

    model = zoo.create_model(name)
    model.load_state_dict(state)
    return model.eval()


def _jpeg(colour, size=(128, 128)) -> bytes:
    return jpeg_bytes(colour, size=size)


@pytest.fixture
def tiny_imagenette(tmp_path, monkeypatch):
    """DIR/imagenette: 4 train and 2 val 128 px photos, zoo's SHA256 list pointed at them."""
    wnids = imagenette.WNIDS
    files = {
        f"train/{wnids[0]}/a.JPEG": _jpeg((200, 10, 10)),
        f"train/{wnids[0]}/b.JPEG": _jpeg((180, 30, 20)),
        f"train/{wnids[9]}/c.JPEG": _jpeg((10, 10, 200)),
        f"train/{wnids[9]}/d.JPEG": _jpeg((20, 40, 190)),
        f"val/{wnids[0]}/e.JPEG": _jpeg((210, 20, 10)),
        f"val/{wnids[9]}/f.JPEG": _jpeg((10, 20, 220)),
    }
    root, _ = write_tiny_imagenette(tmp_path, monkeypatch, files)
    return root.parent


def test_a_run_on_squashed_photos_resizes_to_its_input_size(tiny_imagenette, tmp_path, capsys):
    run = tiny_run(
        tmp_path / "imagenette_run",
        "data.dataset=imagenette",
        f"data.data_dir={tiny_imagenette}",
        "data.train_split=train",
        "data.eval_split=val",
        "data.batch_size=2",
        "data.eval_batch_size=2",
        "data.random_erasing=0",
        "data.crop_padding=0",
        "model.args={}",  # Fashion-MNIST's config sets in_chans 1; the photos give 3
    )
    capsys.readouterr()  # what training printed
    info = dataset_info("imagenette")
    path = photo(tmp_path / "photo.jpg", size=(90, 200))
    assert main(["predict", "resnet20", str(path), "--checkpoint", str(run), "--json", "--topk", "2"]) == 0
    (record,) = json.loads(capsys.readouterr().out)["images"]
    assert {t["label"] for t in record["top"]} <= set(info.classes)
    image = read_image(path, 3)
    squashed = TF.resize(image, list(info.input_size), antialias=True)  # 128x128, nothing cropped
    probs = expected_probs(load_run(run).model, squashed, info.mean, info.std)
    assert record["top"][0]["index"] == int(probs.argmax())
    assert record["top"][0]["prob"] == round(float(probs.max()), 4)

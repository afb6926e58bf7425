"""The zoo command: --help, list, info, and predict on real and broken image files."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.cli import main
from zoo.engine import get_task
from zoo.predict import ModelCard, Preprocess, predict, read_image
from zoo.weights import SeedSpread, find_weights

from .conftest import PROVENANCE, REPO, run_env

BCCD_IMAGE = REPO / "datasets/bccd/BCCD/JPEGImages/BloodImage_00007.jpg"


def fashion_mnist_pngs(folder, n):
    """The first ``n`` shipped Fashion-MNIST test images as grey PNGs, and the labels the
    evaluator's model scores on them (its own loader, the weights' normalisation)."""
    w = find_weights("resnet20.fashion_mnist")
    loader, _ = get_task("classification").build_eval_loader(
        "fashion_mnist", "test", None, n, input_spec=dataclasses.asdict(w.input)
    )
    x, _ = next(iter(loader.batches(0)))
    model = zoo.create_model(w.name, pretrained=True).eval()
    with torch.no_grad():
        scored = model(x[:n]).argmax(1).tolist()
    # the stored uint8 images, before normalisation: a loader without them fails here, never skips
    assert hasattr(loader, "data"), "the eval loader no longer exposes its uint8 images as .data"
    images = loader.data.images[:n]
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"fm{i}.png")
        Image.fromarray(image[0].numpy()).save(paths[-1])
    return paths, scored, w


def test_help_teaches_by_example(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    for command in ("list", "info", "predict", "explain", "export"):
        assert f"zoo {command} " in out


def test_python_dash_m_zoo_runs():
    done = subprocess.run(
        [sys.executable, "-m", "zoo", "list", "--pretrained"], capture_output=True, text=True, env=run_env()
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == zoo.list_models(pretrained=True)


def test_list_filters(capsys):
    assert main(["list", "*resnet2*", "--task", "classification"]) == 0
    assert capsys.readouterr().out.split() == zoo.list_models("*resnet2*", task="classification")
    assert main(["list", "no_such_model*"]) == 1


def test_info_reports_the_weights_and_how_to_reproduce(capsys):
    assert main(["info", "resnet20.fashion_mnist", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    w = find_weights("resnet20.fashion_mnist")
    assert doc["params"] == w.num_params
    assert doc["macs"] == zoo.model_info(zoo.create_model("resnet20", in_chans=1), (1, 28, 28))["macs"]
    assert doc["metrics"] == w.metrics and doc["reproduce"] == w.provenance.command
    assert doc["input"] == [1, 28, 28]
    assert main(["info", "no_such_model"]) == 2
    assert "no_such_model" in capsys.readouterr().err


def test_info_of_an_architecture_describes_its_default_weights_or_itself(capsys):
    assert main(["info", "resnet20", "--json"]) == 0  # the default weight's model and input
    doc = json.loads(capsys.readouterr().out)
    assert doc["name"] == "resnet20.fashion_mnist" and doc["input"] == [1, 28, 28]
    published = {name.split(".")[0] for name in zoo.list_models(pretrained=True)}
    bare = sorted(set(zoo.list_models("*resnet*", task="classification")) - published)[0]
    assert main(["info", bare, "--json"]) == 0  # no weights: the architecture as registered
    doc = json.loads(capsys.readouterr().out)
    assert doc["name"] == bare and doc["macs"] == zoo.model_info(bare)["macs"]


def test_info_shows_the_spread_over_seeds(weight_store, capsys):
    seeds = SeedSpread.of("top1", {0: 91.25, 1: 91.75})
    weight_store.add("resnet20.test", provenance=dataclasses.replace(PROVENANCE, seeds=seeds))
    assert main(["info", "resnet20.test"]) == 0
    assert "seeds       top1 91.5 ± 0.3536 over 2 (seed 0: 91.25, seed 1: 91.75)" in capsys.readouterr().out
    assert main(["info", "resnet20.test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seeds"]["values"] == {"0": 91.25, "1": 91.75}


def test_predict_gives_the_labels_the_evaluator_scores(tmp_path):
    paths, scored, w = fashion_mnist_pngs(tmp_path, 32)
    model = zoo.create_model(w.name, pretrained=True)
    records = predict(model, ModelCard.from_weights(w), paths, topk=1, batch_size=8)
    assert [r["top"][0]["index"] for r in records] == scored


def test_grey_png_rgb_jpeg_and_a_corrupt_file_in_one_call(tmp_path, capsys):
    paths, scored, _ = fashion_mnist_pngs(tmp_path, 2)
    grey = np.array(Image.open(paths[0]))
    jpeg = tmp_path / "colour.jpg"  # another size and mode: RGB, 70x50
    Image.fromarray(np.stack([np.array(Image.open(paths[1]))] * 3, -1)).resize((70, 50)).save(
        jpeg, quality=95
    )
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 10)
    code = main(
        ["predict", "resnet20.fashion_mnist", str(paths[0]), str(jpeg), str(corrupt), "--json", "--topk", "3"]
    )
    assert code == 1  # something failed
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["model"] == "resnet20.fashion_mnist" and doc["task"] == "classification"
    first, second, third = doc["images"]
    assert first["path"] == str(paths[0]) and first["size"] == list(grey.shape)
    assert first["top"][0]["index"] == scored[0]
    assert [set(t) for t in first["top"]] == [{"label", "index", "prob"}] * 3
    assert all(a["prob"] >= b["prob"] for a, b in zip(first["top"], first["top"][1:]))
    assert second["size"] == [50, 70] and len(second["top"]) == 3
    assert set(third) == {"path", "error"} and str(corrupt) in third["error"]
    assert str(corrupt) in captured.err


def test_read_image_converts_modes(tmp_path):
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (9, 7), (10, 20, 30, 128)).save(rgba)
    assert read_image(rgba, 3).shape == (3, 7, 9)
    assert read_image(rgba, 1).shape == (1, 7, 9)
    grey16 = tmp_path / "grey16.png"
    Image.fromarray(np.full((5, 6), 40000, dtype=np.uint16)).save(grey16)
    assert read_image(grey16, 1).flatten()[0] == 40000 // 256


def test_preprocess_resizes_to_the_weights_scale():
    card = ModelCard.from_weights(find_weights("fcn_resnet18.camvid"))  # 360x480
    pre = Preprocess(card)
    assert pre.model_size(720, 960) == (360, 480)
    assert pre(torch.zeros(3, 100, 400, dtype=torch.uint8)).shape == (3, 120, 480)
    card = ModelCard.from_weights(find_weights("resnet20.fashion_mnist"))
    assert Preprocess(card)(torch.zeros(1, 50, 70, dtype=torch.uint8)).shape == (1, 28, 28)


def test_predict_segmentation_writes_mask_and_overlay(tmp_path, capsys):
    image = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(image)
    assert main(["predict", "fcn_resnet18.camvid", str(image), "--out", str(tmp_path / "out"), "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)["images"]
    assert abs(sum(record["class_fractions"].values()) - 1) < 1e-3
    for kind in ("mask", "overlay"):
        picture = Image.open(record["pictures"][kind])
        assert picture.width == 80 and picture.height >= 60  # the overlay has a legend below


def test_predict_detection_draws_boxes_above_the_threshold(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", "fcos_dcn_resnet18.bccd", str(BCCD_IMAGE), "--out", str(out), "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)["images"]
    dets = record["detections"]
    assert dets and all({"label", "index", "score", "box"} == set(d) for d in dets)
    assert sum(d["score"] >= 0.5 for d in dets) > 0
    assert Image.open(record["pictures"]["boxes"]).width == 640

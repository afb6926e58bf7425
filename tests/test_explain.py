"""Explanation maps: the image's size, values in [0, 1]; and the pictures zoo explain writes."""

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.cli import main
from zoo.explain import attention_maps, attention_rollout, grad_cam

from .conftest import REPO, randomize_batchnorm


def in_unit_range(maps):
    return bool(((maps >= 0) & (maps <= 1)).all())


def test_cbam_spatial_maps_per_stage_and_channel_weights():
    torch.manual_seed(0)
    model = zoo.create_model("cbam_resnet20", pretrained=False).eval()
    randomize_batchnorm(model)
    x = torch.randn(2, 3, 32, 40)
    maps = attention_maps(model, x)
    assert len(maps.spatial) == 9  # one CBAM per block: 3 stages of 3
    assert maps.stages == ["layer1.2.attn.spatial", "layer2.2.attn.spatial", "layer3.2.attn.spatial"]
    for m in maps.spatial.values():
        assert m.shape == (2, 32, 40) and in_unit_range(m)
    assert {w.shape[1] for w in maps.channel.values()} == {16, 32, 64}
    assert all(in_unit_range(w) for w in maps.channel.values())
    # the map is the module's own gate: the block's output is its input times this map
    block = model.layer1[0].attn.spatial
    seen = {}
    handle = block.register_forward_hook(lambda m, i, o: seen.update(i=i[0], o=o))
    model(x[:1])
    handle.remove()
    gate = (seen["o"] / seen["i"])[0, 0]
    assert torch.allclose(attention_maps(model, x[:1]).spatial["layer1.0.attn.spatial"][0], gate, atol=1e-5)


def test_se_channel_weights():
    model = zoo.create_model("se_resnet20").eval()
    maps = attention_maps(model, torch.randn(1, 3, 32, 32))
    assert len(maps.channel) == 9 and not maps.spatial


@pytest.mark.parametrize("name", ["plain20", "resnet20", "densenet_bc40"])
def test_grad_cam_for_plain_cnns(name):
    torch.manual_seed(0)
    model = zoo.create_model(name).eval()
    randomize_batchnorm(model)
    x = torch.randn(2, 3, 32, 48)
    cam, target = grad_cam(model, x)
    assert cam.shape == (2, 32, 48) and in_unit_range(cam)
    assert torch.allclose(cam.flatten(1).amax(1), torch.ones(2))  # scaled by its maximum
    with torch.no_grad():
        assert torch.equal(target, model(x).argmax(1))  # the predicted class by default


def test_grad_cam_target_changes_the_map():
    torch.manual_seed(0)
    model = zoo.create_model("resnet20").eval()
    randomize_batchnorm(model)
    x = torch.randn(1, 3, 32, 32)
    a, _ = grad_cam(model, x, target=torch.tensor([0]))
    b, _ = grad_cam(model, x, target=torch.tensor([1]))
    assert not torch.allclose(a, b)


def test_attention_rollout_for_the_vit():
    torch.manual_seed(0)
    model = zoo.create_model("vit_tiny_patch7_28").eval()
    x = torch.randn(2, 1, 28, 28)
    maps = attention_rollout(model, x)
    assert maps.shape == (2, 28, 28) and in_unit_range(maps)
    assert torch.allclose(maps.flatten(1).amax(1), torch.ones(2))


def test_attention_rollout_stays_on_the_maps_device():
    # on the meta device, as on CUDA, an identity matrix left on the CPU cannot be added to the maps
    model = zoo.create_model("vit_tiny_patch7_28").eval().to("meta")
    maps = attention_rollout(model, torch.randn(2, 1, 28, 28, device="meta"))
    assert maps.shape == (2, 28, 28) and maps.device.type == "meta"


def test_explain_weights_that_resize_and_crop(weight_store, tmp_path):
    # resize_size set: the weights' own transforms resize and crop, and the picture must match
    weight_store.add("resnet20.crop", resize_size=36, input_size=[32, 32])
    image = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(image)
    assert main(["explain", "resnet20.crop", str(image), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "wide_gradcam.png").is_file()


def test_cli_explain_writes_pictures_and_reports_a_corrupt_file(tmp_path, capsys):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)).save(grey)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff" + b"0" * 20)
    code = main(
        ["explain", "resnet20.fashion_mnist", str(grey), str(corrupt), "--out", str(tmp_path / "out")]
    )
    assert code == 1
    assert str(corrupt) in capsys.readouterr().err
    assert (tmp_path / "out" / "grey_gradcam.png").is_file()


def test_cli_explain_deformable_sampling_points(tmp_path):
    image = REPO / "datasets/bccd/BCCD/JPEGImages/BloodImage_00007.jpg"
    assert main(["explain", "fcos_dcn_resnet18.bccd", str(image), "--out", str(tmp_path)]) == 0
    assert Image.open(tmp_path / "BloodImage_00007_sampling.png").size == (640, 480)
    assert (tmp_path / "BloodImage_00007_scores.png").is_file()

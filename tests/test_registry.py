"""The registry (names, filters, errors) and create_model / model_info."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo import UnknownArgumentError, _registry, create_model, is_model, list_models, model_info
from zoo._registry import get_entry, register_model, split_name

SMALL_RESNETS = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
IMAGENET_RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101"]


@pytest.fixture
def throwaway_segmentation_model():
    """A segmentation model registered for one test and removed afterwards."""
    name = "_zoo_test_segmenter"

    def _zoo_test_segmenter():
        return {}

    try:
        register_model(torch.nn.Identity, task="segmentation", input_size=(3, 64, 64))(_zoo_test_segmenter)
        yield name
    finally:
        _registry._MODELS.pop(name, None)


def test_list_models_sorted_and_complete():
    names = list_models()
    assert names == sorted(names) and len(names) == len(set(names))
    for n in SMALL_RESNETS + IMAGENET_RESNETS + ["plain20", "se_resnet50", "cbam_resnet56"]:
        assert n in names


def test_list_models_fnmatch_filter():
    names = list_models("resnet*")
    assert names and all(n.startswith("resnet") for n in names)
    assert set(SMALL_RESNETS + IMAGENET_RESNETS) <= set(names)
    assert "se_resnet50" not in names and "plain20" not in names
    wild = list_models("*resnet5?")
    assert {"resnet50", "resnet56", "se_resnet50", "cbam_resnet56"} <= set(wild)
    assert all(n[:-1].endswith("resnet5") for n in wild)
    assert list_models("resnet5?") == ["resnet50", "resnet56"]
    assert list_models("no_such_model*") == []


def test_list_models_list_of_patterns_is_a_union():
    names = list_models(["plain*", "se_resnet5*"])
    assert names == sorted(names)
    assert set(names) == set(list_models("plain*")) | set(list_models("se_resnet5*"))
    assert "plain20" in names and "se_resnet50" in names and "resnet20" not in names
    assert list_models(["", "resnet20"]) == ["resnet20"]  # empty patterns are ignored


def test_list_models_task_filter(throwaway_segmentation_model):
    seg = list_models(task="segmentation")
    cls = list_models(task="classification")
    assert throwaway_segmentation_model in seg and throwaway_segmentation_model not in cls
    assert "resnet20" in cls and "resnet20" not in seg
    assert all(get_entry(n).task == "segmentation" for n in seg)
    assert all(get_entry(n).task == "classification" for n in cls)
    assert set(seg) | set(cls) <= set(list_models())
    assert list_models("_zoo_test*", task="segmentation") == [throwaway_segmentation_model]
    assert list_models("_zoo_test*", task="classification") == []


@pytest.mark.parametrize("task", ["classify", "Classification", ""])
def test_list_models_invalid_task(task):
    with pytest.raises(ValueError, match="task"):
        list_models(task=task)


def test_register_model_invalid_task():
    with pytest.raises(ValueError, match="task"):
        register_model(torch.nn.Identity, task="generation")


def test_entries():
    small, big = get_entry("resnet20"), get_entry("resnet50")
    assert small.name == "resnet20" and small.family == "resnet" and small.task == "classification"
    assert small.cls is big.cls is type(create_model("resnet20"))
    assert small.input_size == (3, 32, 32) and big.input_size == (3, 224, 224)
    assert get_entry("resnet20.fashion_mnist") is small


def test_is_model_and_split_name():
    assert is_model("resnet20")
    assert is_model("resnet20.fashion_mnist")
    assert is_model("resnet50.anything_at_all")
    assert not is_model("resnet21")
    assert not is_model("fashion_mnist.resnet20")
    assert split_name("resnet20.fashion_mnist") == ("resnet20", "fashion_mnist")
    assert split_name("resnet20") == ("resnet20", None)


def test_create_model_ignores_tag_without_pretrained():
    model = create_model("resnet20.fashion_mnist", in_chans=1)
    assert model.in_chans == 1 and model.num_classes == 10


@pytest.mark.parametrize("call", [create_model, get_entry])
def test_unknown_model_suggests_close_matches(call):
    with pytest.raises(KeyError) as e:
        call("resnt20")
    msg = str(e.value)
    assert "'resnt20'" in msg and "resnet20" in msg


def test_unknown_model_without_close_match():
    with pytest.raises(KeyError) as e:
        create_model("qqqqqqqqqq")
    assert "Did you mean" not in str(e.value) and "list_models" in str(e.value)


def test_misspelt_kwarg_names_it_and_suggests():
    with pytest.raises(UnknownArgumentError) as e:
        create_model("resnet20", nrom="layernorm")
    msg = str(e.value)
    assert "'nrom'" in msg and "'norm'" in msg
    assert isinstance(e.value, TypeError)  # still a TypeError, as Python's own bad-kwarg error is
    with pytest.raises(UnknownArgumentError, match="output_strid.*'output_stride'"):
        create_model("resnet50", output_strid=8)


@pytest.mark.parametrize(
    "name, kwargs, fixed",
    [
        ("resnet20", {"layers": (1, 1, 1)}, "layers"),
        ("resnet50", {"layers": (1, 1, 1, 1)}, "layers"),
        ("plain20", {"shortcut": True}, "shortcut"),
        ("se_resnet20", {"attn": "cbam"}, "attn"),
        ("resnet20", {"stem": "imagenet"}, "stem"),
    ],
)
def test_overriding_a_fixed_argument_raises(name, kwargs, fixed):
    with pytest.raises(UnknownArgumentError, match=f"^{name} fixes {fixed}"):  # the registered name
        create_model(name, **kwargs)


def test_the_decorator_passes_the_registered_name_and_defaults():
    def _zoo_test_linear():
        return dict(in_features=3)

    try:
        build = register_model(torch.nn.Linear, defaults=dict(out_features=2))(_zoo_test_linear)
        assert build is get_entry("_zoo_test_linear").fn and build.__name__ == "_zoo_test_linear"
        assert create_model("_zoo_test_linear").weight.shape == (2, 3)
        assert build(out_features=5).weight.shape == (5, 3)  # a default is the caller's to change
        with pytest.raises(UnknownArgumentError, match="^_zoo_test_linear fixes in_features"):
            build(in_features=4)
        with pytest.raises(UnknownArgumentError, match="^_zoo_test_linear got unknown argument.*'bias'"):
            build(biass=False)
    finally:
        _registry._MODELS.pop("_zoo_test_linear", None)


def test_depth_is_not_an_argument():
    with pytest.raises(UnknownArgumentError, match="depth"):
        create_model("resnet20", depth=32)


def test_duplicate_registration_raises():
    def _zoo_test_duplicate():
        return {}

    try:
        register_model(torch.nn.Identity)(_zoo_test_duplicate)
        first = _registry._MODELS["_zoo_test_duplicate"]
        assert is_model("_zoo_test_duplicate")
        with pytest.raises(ValueError, match="already registered"):
            register_model(torch.nn.Identity)(_zoo_test_duplicate)
        assert _registry._MODELS["_zoo_test_duplicate"] is first  # the first registration stands
    finally:
        _registry._MODELS.pop("_zoo_test_duplicate", None)
    assert not is_model("_zoo_test_duplicate")


def test_duplicate_of_existing_model_raises():
    def resnet20():
        return {}

    original = _registry._MODELS["resnet20"]
    with pytest.raises(ValueError, match="resnet20"):
        register_model(torch.nn.Identity)(resnet20)
    assert _registry._MODELS["resnet20"] is original


def test_model_info_counts_a_tiny_model_by_hand():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10)
    )
    info = model_info(model, input_size=(3, 4, 4))
    # conv: 8 filters x 3 channels x 3x3 taps at each of 4x4 positions; linear: 128 x 10
    assert info["macs"] == 8 * 3 * 9 * 16 + 128 * 10 == 4736 and info["flops"] == 2 * 4736
    assert info["params"] == 8 * 3 * 9 + 128 * 10 + 10 == 1506
    assert info["name"] == "Sequential" and info["input_size"] == (3, 4, 4)


def small_resnet_macs(depth: int, classes: int = 10, side: int = 32) -> int:
    """Multiply-adds of He et al.'s 6n+2 CIFAR ResNet, conv by conv (norms and adds are not MACs)."""
    n, total, in_chs = (depth - 2) // 6, 16 * 3 * 9 * side**2, 16  # the stem
    for stage, chs in enumerate((16, 32, 64)):
        area = (side // 2**stage) ** 2
        for _ in range(n):
            total += chs * in_chs * 9 * area + chs * chs * 9 * area  # two 3x3 convs
            if in_chs != chs:
                total += chs * in_chs * area  # the 1x1 projection shortcut
            in_chs = chs
    return total + 64 * classes


@pytest.mark.parametrize(
    "name, params_m, macs",
    [
        # He et al. 2016, Table 6: ResNet-20 0.27M and ResNet-56 0.85M parameters.
        ("resnet20", 0.27, small_resnet_macs(20)),
        ("resnet56", 0.85, small_resnet_macs(56)),
        # torchvision's model docs: ResNet-18 11.69M parameters and 1.81 GFLOPS (multiply-adds)
        # at 224 px; ResNet-50 25.56M and 4.09.
        ("resnet18", 11.69, 1.81e9),
        ("resnet50", 25.56, 4.09e9),
    ],
)
def test_model_info_matches_published_numbers(name, params_m, macs):
    info = model_info(name)
    params = info["params"]
    if name in ("resnet20", "resnet56"):
        # The paper's CIFAR nets pad with zeros where the shape changes (its option A); ours have
        # 1x1 projections there instead: two of them, conv + BN, 16->32 and 32->64 channels.
        params -= (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert round(params / 1e6, 2) == params_m
    assert info["macs"] == macs if isinstance(macs, int) else round(info["macs"] / 1e9, 2) == macs / 1e9
    assert info["flops"] == 2 * info["macs"]


def test_model_info_at_another_input_size():
    model = create_model("resnet20")
    assert model_info(model, input_size=(3, 64, 64))["macs"] == small_resnet_macs(20, side=64)


def test_model_info_module_needs_input_size_and_restores_mode():
    model = create_model("resnet20").train()
    with pytest.raises(ValueError, match="input_size"):
        model_info(model)
    model_info(model, input_size=(3, 32, 32))
    assert model.training
    assert all(not p.requires_grad or p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(name=None), TypeError, r"name must be a registered model name \(str.*got None"),
        (dict(name=20), TypeError, r"name must be a registered model name \(str.*got 20"),
        (dict(num_classes=-1), ValueError, r"num_classes must be >= 0 \(0 for no classifier\), got -1"),
        (dict(num_classes="10"), TypeError, r"num_classes must be an int .*got str '10'"),
        (dict(num_classes=10.0), TypeError, r"num_classes must be an int .*got float 10.0"),
        (dict(num_classes=True), TypeError, r"num_classes must be an int .*got bool True"),
        (dict(in_chans="3"), TypeError, r"in_chans must be an int .*got str '3'"),
        (dict(in_chans=0), ValueError, r"in_chans must be >= 1 .*got 0"),
        (dict(drop_path_rate=2.0), ValueError, r"drop_path_rate must be a number in \[0, 1\).*got 2.0"),
        (dict(drop_path_rate=-0.1), ValueError, r"drop_path_rate must be a number in \[0, 1\).*got -0.1"),
        (dict(name="vit_tiny_patch7_28", drop_path_rate=1.0), ValueError, r"drop_path_rate .*got 1.0"),
    ],
)
def test_create_model_refuses_bad_arguments_in_one_line(kwargs, error, message):
    kwargs = {"name": "resnet20", **kwargs}
    with pytest.raises(error, match=message) as err:
        create_model(**kwargs)
    assert "\n" not in str(err.value)


def test_no_classes_is_still_a_headless_model():
    model = create_model("resnet20", num_classes=0).eval()
    assert isinstance(model.fc, torch.nn.Identity) and model(torch.zeros(1, 3, 32, 32)).shape == (1, 64)
    with pytest.raises(ValueError, match="num_classes must be an int >= 0 .*got -2"):
        model.reset_classifier(-2)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_integer_images_are_refused_with_what_to_do(dtype):
    model = create_model("resnet20").eval()
    with pytest.raises(TypeError, match=rf"floating-point image tensor.*eval_transforms.*got dtype {dtype}"):
        model(torch.zeros(1, 3, 32, 32, dtype=dtype))


def test_model_info_of_a_tag_describes_its_weights():
    """resnet20's default is 3x32x32 with 10 classes; its Fashion-MNIST weights are 1x28x28."""
    from zoo.weights import find_weights

    w = find_weights("resnet20.fashion_mnist")
    info = model_info("resnet20.fashion_mnist")
    assert info["input_size"] == (1, 28, 28) == (w.input.in_chans, *w.input.input_size)
    assert info["params"] == w.num_params
    model = create_model("resnet20", in_chans=1, num_classes=w.num_classes)
    assert info["macs"] == model_info(model, input_size=(1, 28, 28))["macs"]
    assert model_info("resnet20")["input_size"] == (3, 32, 32)


def test_public_api():
    assert set(zoo.__all__) >= {
        "create_model",
        "is_model",
        "list_models",
        "model_info",
        "UnknownArgumentError",
    }
    assert all(hasattr(zoo, name) for name in zoo.__all__)

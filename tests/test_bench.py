"""The benchmark helpers measure what they say (speed itself is machine-dependent: only sanity)."""

import math

import torch

from zoo import bench
from zoo.engine.autotune import Trial

from .conftest import REPO


def test_deform_bench_times_both_implementations_and_a_plain_conv():
    rows = bench.deform_layer((1, 4, 6, 7), repeats=1)
    assert [name for name, _ in rows] == ["torchvision", "grid_sample", "plain 3x3 conv (reference)"]
    assert all(math.isfinite(sec) and sec > 0 for _, sec in rows)


def test_inference_bench_uses_the_weights_input_else_the_registry_size():
    assert bench.input_shape("resnet20.fashion_mnist") == (1, 28, 28)  # published: 1 channel
    assert bench.input_shape("resnet56") == (3, 32, 32)  # no weights: the registered size
    for name in ("resnet20.fashion_mnist", "resnet56"):
        ips = bench.inference(name, batch=2, bf16=True, channels_last=True, repeats=1)
        assert math.isfinite(ips) and ips > 0


TINY = ["data.train_split=test", "data.batch_size=8"]  # the shipped split
CONFIG = str(REPO / "configs/fashion_mnist/resnet20.yaml")


def test_train_bench_probes_every_setting_on_a_real_batch():
    recipe = bench.recipe_setup("resnet20", CONFIG, TINY)
    trials = bench.probe_settings(recipe, 1)
    assert recipe.images == 8
    assert [(t.amp_bf16, t.channels_last) for t in trials] == [
        (False, True),
        (False, False),
        (True, True),
        (True, False),
    ]
    assert all(t.steps == 1 and math.isfinite(t.seconds) and t.seconds > 0 for t in trials)  # none abandoned
    assert "native bf16 (AVX-512 BF16 or AMX): " in bench.cpu_description()


def test_profile_finds_the_convolution_kernels():
    recipe = bench.recipe_setup("resnet20", CONFIG, TINY)
    fp32_cl = Trial(amp_bf16=False, channels_last=True, seconds=0.0, steps=0, warmup_seconds=0.0)
    before = {k: v.clone() for k, v in recipe.model.state_dict().items()}
    averages = bench.step_profile(recipe, fp32_cl, steps=1)
    total = sum(e.self_cpu_time_total for e in averages) / 1e3
    assert 0 < bench.conv_ms(averages, steps=1) < total  # a renamed kernel would read 0 here
    assert all(torch.equal(v, before[k]) for k, v in recipe.model.state_dict().items())  # trained a copy

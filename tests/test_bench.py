"""The benchmark helpers measure what they say (speed itself is machine-dependent: only sanity)."""

import math

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


def test_train_bench_probes_every_setting_on_a_real_batch():
    overrides = ["data.train_split=test", "data.batch_size=8"]  # the shipped split
    trials, batch = bench.probe_settings(
        "resnet20", str(REPO / "configs/fashion_mnist/resnet20.yaml"), 1, overrides
    )
    assert batch == 8
    assert [(t.amp_bf16, t.channels_last) for t in trials] == [
        (False, True),
        (False, False),
        (True, True),
        (True, False),
    ]
    assert all(t.steps == 1 and math.isfinite(t.seconds) and t.seconds > 0 for t in trials)  # none abandoned
    assert "native bf16 (AVX-512 BF16 or AMX): " in bench.cpu_description()


def test_profile_finds_the_convolution_kernels():
    overrides = ["data.train_split=test", "data.batch_size=8"]
    fp32_cl = Trial(amp_bf16=False, channels_last=True, seconds=0.0, steps=0, warmup_seconds=0.0)
    config = str(REPO / "configs/fashion_mnist/resnet20.yaml")
    averages, setting, images = bench.step_profile("resnet20", config, 1, overrides, setting=fp32_cl)
    assert setting is fp32_cl and images == 8
    total = sum(e.self_cpu_time_total for e in averages) / 1e3
    assert 0 < bench.conv_ms(averages, steps=1) < total  # a renamed kernel would read 0 here

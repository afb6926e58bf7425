"""The benchmark helpers measure what they say (speed itself is machine-dependent: only sanity)."""

import math

from zoo import bench


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

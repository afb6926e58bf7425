"""The benchmark helpers measure what they say (speed itself is machine-dependent: only sanity)."""

import math

import torch

import zoo
from zoo import bench
from zoo.engine.autotune import Trial

from .conftest import REPO


def test_deform_bench_times_both_implementations_and_a_plain_conv():
    rows = bench.deform_layer((1, 4, 6, 7), repeats=1)
    assert [name for name, _ in rows] == ["torchvision", "grid_sample", "plain 3x3 conv (reference)"]
    assert all(math.isfinite(sec) and sec > 0 for _, sec in rows)


def test_inference_bench_uses_the_weights_input_else_the_registry_size():
    assert bench.input_shape("resnet20.fashion_mnist") == (1, 28, 28)  # published: 1 channel
    unpublished = "resnet110"
    assert not zoo.list_models(unpublished, pretrained=True), "pick an architecture without weights"
    assert bench.input_shape(unpublished) == (3, 32, 32)  # no weights: the registered size
    for name in ("resnet20.fashion_mnist", unpublished):
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


# -- the chosen device reaches everything ------------------------------------------------------------
# The meta device stands in for a GPU: it computes shapes only, and a tensor left on the CPU
# beside a meta model is an error, so a row that ignored the device would fail here.
META = torch.device("meta")


def on(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def test_inference_and_deform_run_on_the_chosen_device(monkeypatch):
    models = []
    real_create = bench.create_model
    monkeypatch.setattr(
        bench, "create_model", lambda *a, **k: models.append(real_create(*a, **k)) or models[-1]
    )
    assert bench.inference("resnet20", batch=2, bf16=False, channels_last=True, repeats=1, device=META) > 0
    assert [on(m) for m in models] == [META]
    seen = []

    def deform_forward(self, x):  # the real one switches autocast off, which meta does not know
        seen.append((x.device, on(self)))
        return torch.nn.functional.conv2d(x, self.weight, padding=1)

    monkeypatch.setattr(bench.DeformConv2d, "forward", deform_forward)
    rows = bench.deform_layer((1, 4, 6, 7), repeats=1, device=META)
    assert len(rows) == 3 and seen == [(META, META)] * 4  # 2 implementations x (warm-up + 1)


def test_probe_and_profile_run_on_the_chosen_device(monkeypatch):
    recipe = bench.recipe_setup("resnet20", CONFIG, TINY)
    seen = []

    def time_settings(model, batch, task, cfg, device, settings, *args):
        seen.append((device, on(model)))
        return [Trial(b, c, 1.0, 1, 1.0) for b, c in settings]

    monkeypatch.setattr(bench, "time_settings", time_settings)
    bench.probe_settings(recipe, 1, device=META)
    assert seen == [(META, META)]
    fp32 = Trial(amp_bf16=False, channels_last=True, seconds=0.0, steps=0, warmup_seconds=0.0)
    assert len(bench.step_profile(recipe, fp32, steps=1, device=META)) > 0
    assert on(recipe.model) == torch.device("cpu")  # the recipe's own model stays where it was


def test_the_trainer_rows_get_the_device_as_train_device(monkeypatch, tmp_path):
    """The trainer resolves ``train.device`` itself (under torchrun: each process's own GPU)."""
    seen = []

    def train(cfg):
        seen.append(cfg.train.device)
        (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 99, "img_per_s": 5.0}\n')

    def run(cmd, **kwargs):
        seen.append(next(a for a in cmd if a.startswith("train.device=")))
        (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 99, "img_per_s": 5.0}\n')

    class Folder:  # the run's folder is ours, to hand the row a metrics log
        def __enter__(self):
            return str(tmp_path)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(bench, "train", train)
    monkeypatch.setattr(bench.subprocess, "run", run)
    monkeypatch.setattr(bench.tempfile, "TemporaryDirectory", Folder)
    gpu = torch.device("cuda", 1)
    assert bench.zoo_trainer("resnet20", CONFIG, 100, 10, 10, False, False, device=gpu) == 5.0
    assert bench.zoo_trainer("resnet20", CONFIG, 100, 10, 10, False, False, procs=2, device=gpu) == 5.0
    assert seen == ["cuda:1", "train.device=cuda:1"]

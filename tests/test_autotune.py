"""auto precision / memory format: the measurement decides, and leaves no trace on the run."""

import json

import pytest
import torch
from safetensors.torch import load_file

from zoo.config import load_config
from zoo.engine import autotune, train
from zoo.engine.distributed import DistInfo
from zoo.engine.tasks import ClassificationTask
from zoo.engine.trainer import resolve_speed_settings

from .test_trainer import CONFIG, TINY


class FakeClock:
    """Seconds that pass only when a test says so: timings are exact on a busy machine."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SlowUnder(ClassificationTask):
    """A classification task whose loss takes 50 ms of the fake clock under one setting and
    1 ms under the others, to see the choice follow the clock."""

    def __init__(self, slow_bf16: bool, clock: FakeClock):
        self.slow_bf16, self.clock = slow_bf16, clock

    def loss(self, model, batch, cfg):
        self.clock.now += 0.05 if torch.is_autocast_enabled("cpu") == self.slow_bf16 else 0.001
        return super().loss(model, batch, cfg)


def test_candidates_cover_what_the_config_leaves_open():
    assert autotune.candidates("auto", "auto") == [(False, True), (False, False), (True, True), (True, False)]
    assert autotune.candidates(False, "auto") == [(False, True), (False, False)]
    assert autotune.candidates("auto", True) == [(False, True), (True, True)]


@pytest.mark.parametrize("slow_bf16", [True, False])
def test_the_fastest_setting_wins_and_slow_ones_are_abandoned(slow_bf16):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    batch = (torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,)))
    cfg, clock = load_config(CONFIG), FakeClock()
    trials = autotune.time_settings(
        model,
        batch,
        SlowUnder(slow_bf16, clock),
        cfg,
        torch.device("cpu"),
        autotune.candidates("auto", "auto"),
        clock=clock,
    )
    assert [(t.amp_bf16, t.channels_last) for t in trials] == autotune.candidates("auto", "auto")
    assert autotune.fastest(trials).amp_bf16 is not slow_bf16
    slow = [t for t in trials if t.amp_bf16 is slow_bf16]
    if slow_bf16:  # bf16 comes after the fast float32 trials: abandoned after one timed step
        assert all(t.abandoned and t.steps == 1 and t.seconds == pytest.approx(0.05) for t in slow)
    else:  # float32 goes first, with nothing to compare against yet: timed in full
        assert all(not t.abandoned and t.steps == 3 and t.seconds == pytest.approx(0.05) for t in slow)
    fast = [t for t in trials if t.amp_bf16 is not slow_bf16]
    assert all(not t.abandoned and t.steps == 3 and t.seconds == pytest.approx(0.001) for t in fast)
    assert "<- chosen" in autotune.describe(trials, batch_size=4)


def test_probing_changes_neither_the_model_nor_the_random_stream():
    # Batch norm (running statistics) and dropout (the global RNG): what a probe could disturb.
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Dropout(0.5),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 26 * 26, 10),
    )
    batch = (torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    autotune.time_settings(
        model, batch, ClassificationTask(), load_config(CONFIG), torch.device("cpu"), [(False, True)]
    )
    assert torch.equal(torch.rand(3), expected)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_auto_run_equals_the_run_configured_with_its_choice(tmp_path):
    common = [*TINY, "train.max_steps=6", "train.ckpt_every_steps=0"]
    train(
        load_config(
            CONFIG,
            [
                *common,
                "train.amp_bf16=false",
                "train.channels_last=auto",
                f"train.out_dir={tmp_path / 'auto'}",
            ],
        )
    )
    chosen = json.loads((tmp_path / "auto" / "config.json").read_text())["train"]
    assert chosen["amp_bf16"] is False and isinstance(chosen["channels_last"], bool)
    probes = [json.loads(line) for line in (tmp_path / "auto" / "metrics.jsonl").read_text().splitlines()]
    assert [(p["amp_bf16"], p["channels_last"]) for p in probes if p["kind"] == "autotune"] == [
        (False, True),
        (False, False),
    ]
    train(
        load_config(
            CONFIG,
            [
                *common,
                "train.amp_bf16=false",
                f"train.channels_last={chosen['channels_last']}",
                f"train.out_dir={tmp_path / 'fixed'}",
            ],
        )
    )
    a = load_file(tmp_path / "auto" / "model.safetensors")
    b = load_file(tmp_path / "fixed" / "model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _no_probe(*args, **kwargs):
    raise AssertionError("this process must not measure")


@pytest.mark.parametrize(
    "overrides, expected",
    [
        # auto: the checkpointed run's choice, so the resumed run computes what it did
        (["train.amp_bf16=auto", "train.channels_last=auto"], (True, True)),
        # an explicit value wins, e.g. resuming after a NaN with amp_bf16=false as its message suggests
        (["train.amp_bf16=false", "train.channels_last=auto"], (False, True)),
    ],
)
def test_a_resumed_run_takes_auto_values_from_its_checkpoint(monkeypatch, overrides, expected):
    monkeypatch.setattr("zoo.engine.trainer.time_settings", _no_probe)
    saved = {"train": {"amp_bf16": True, "channels_last": True}}
    resolved = resolve_speed_settings(
        load_config(CONFIG, overrides), None, None, None, DistInfo(), saved, log=None
    )
    assert (resolved.train.amp_bf16, resolved.train.channels_last) == expected


def test_other_processes_run_the_main_process_choice(monkeypatch):
    monkeypatch.setattr("zoo.engine.trainer.time_settings", _no_probe)  # only rank 0 measures

    def broadcast_from_rank0(box, src):
        assert src == 0 and box == [None]
        box[0] = {"amp_bf16": False, "channels_last": True}

    monkeypatch.setattr(torch.distributed, "broadcast_object_list", broadcast_from_rank0)
    cfg = load_config(CONFIG, ["train.amp_bf16=auto", "train.channels_last=auto"])
    resolved = resolve_speed_settings(cfg, None, None, None, DistInfo(rank=1, world=2), None, log=None)
    assert (resolved.train.amp_bf16, resolved.train.channels_last) == (False, True)


def test_forcing_emulated_bf16_warns(monkeypatch):
    monkeypatch.setattr("zoo.engine.trainer.native_bf16", lambda: False)
    cfg = load_config(CONFIG, ["train.amp_bf16=true", "train.channels_last=true"])
    with pytest.warns(UserWarning, match="this CPU has no native bf16"):
        assert resolve_speed_settings(cfg, None, None, None, DistInfo(), None, log=None) is cfg

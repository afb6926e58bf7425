"""The trainer on tiny runs over the shipped Fashion-MNIST test split (always present)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zoo.config import load_config
from zoo.engine import NonFiniteLossError, train
from zoo.engine.checkpoint import load_checkpoint, save_checkpoint
from zoo.engine.tasks import ClassificationTask
from zoo.engine.trainer import restore_rng, rng_state

from .conftest import REPO, run_env

TINY = [
    "data.train_split=test",  # the shipped split: no download, no Debian package needed
    "data.batch_size=32",
    "data.random_erasing=0.25",
    "model.name=resnet20",
    "train.amp_bf16=false",
    "train.channels_last=false",
    "train.deterministic=true",
    "train.eval_every_epochs=0",
    "train.log_every_steps=5",
    "train.ema=true",
    "train.ema_decay=0.9",
    "schedule.warmup_epochs=0",
]
CONFIG = REPO / "configs/fashion_mnist/resnet20.yaml"


def _train_cli(out: Path, *extra: str, resume: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "train.py"), str(CONFIG), *TINY, f"train.out_dir={out}", *extra]
    if resume:
        cmd.append("--resume")
    return subprocess.Popen(
        cmd, cwd=REPO, env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def check_resume_after_sigkill(tmp_path: Path, extra: list[str], max_steps: int, kill_from: int) -> None:
    """Train ``max_steps`` steps once; train again, SIGKILL as soon as a checkpoint at step
    ``kill_from`` or later (but before the end) exists, resume: the weights must equal the
    uninterrupted run's bit for bit."""
    steps = [f"train.max_steps={max_steps}", *extra]
    reference = _train_cli(tmp_path / "ref", *steps)
    assert reference.wait(timeout=300) == 0, reference.stdout.read()

    run = tmp_path / "killed"
    proc = _train_cli(run, *steps)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if load_checkpoint(run / "last.ckpt")["step"] >= kill_from:
                break
        except Exception:  # not written yet, or being replaced right now; read again
            pass
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"no checkpoint at step {kill_from} or later within 300 s")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(run / "last.ckpt")["step"]
    assert kill_from <= killed_at < max_steps and not (run / "model.safetensors").exists()

    resumed = _train_cli(run, *steps, resume=True)
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert f"resumed from {run / 'last.ckpt'} at step {killed_at}" in out
    a, b = load_file(tmp_path / "ref" / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_after_sigkill_gives_identical_weights(tmp_path):
    check_resume_after_sigkill(tmp_path, ["train.ckpt_every_steps=4"], max_steps=24, kill_from=4)


def test_checkpoints_carry_the_cuda_rng_state_when_cuda_is_in_use(tmp_path, monkeypatch):
    gpu, cpu = torch.device("cuda", 0), torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert set(rng_state(cpu)) == set(rng_state(gpu)) == {"rng"}  # CUDA not initialised: no key
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert set(rng_state(cpu)) == {"rng"}  # a CPU run's checkpoint: as before
    gpu_state = torch.arange(16, dtype=torch.uint8)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: gpu_state)
    save_checkpoint({"model": {}, "config": {}, "step": 1, **rng_state(gpu)}, tmp_path / "last.ckpt")
    state = load_checkpoint(tmp_path / "last.ckpt")
    assert torch.equal(state["cuda_rng"], gpu_state)

    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append((s, device)))
    restore_rng({"rng": state["rng"]}, gpu)  # a checkpoint from before cuda_rng still loads
    restore_rng(state, cpu)  # a run moved to the CPU leaves the GPU alone
    assert restored == []
    expected = torch.rand(3)
    restore_rng(state, gpu)
    assert restored == [(state["cuda_rng"], gpu)] and torch.equal(torch.rand(3), expected)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss = ClassificationTask.loss

    def loss_that_explodes(self, model, batch, cfg):
        calls["n"] += 1
        loss = real_loss(self, model, batch, cfg)
        return loss * float("nan") if calls["n"] == 7 else loss

    monkeypatch.setattr(ClassificationTask, "loss", loss_that_explodes)
    cfg = load_config(
        CONFIG, TINY + ["train.max_steps=20", "train.ckpt_every_steps=5", f"train.out_dir={tmp_path}"]
    )
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 6"):
        train(cfg)
    state = load_checkpoint(tmp_path / "last.ckpt")
    assert state["step"] == 5
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "model.safetensors").exists()


def test_ddp_step_equals_single_process_step(tmp_path):
    # GroupNorm: BatchNorm statistics are per process under DDP, so they would differ by design.
    common = [
        *TINY,
        "train.max_steps=2",
        "train.ckpt_every_steps=0",
        "data.random_erasing=0.0",
        "train.ema=false",
        "model.args={in_chans: 1, norm: groupnorm}",
        "data.batch_size=16",
    ]
    # The DDP run chooses its memory format by measurement: the main process times it and
    # every process must then run that choice (else the all-reduce would hang or differ).
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "train.py",
            str(CONFIG),
            *common,
            "train.channels_last=auto",
            f"train.out_dir={tmp_path / 'ddp'}",
        ],
        cwd=REPO,
        env=run_env(OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    chosen = json.loads((tmp_path / "ddp" / "config.json").read_text())["train"]["channels_last"]
    assert isinstance(chosen, bool)
    single = subprocess.run(
        [
            sys.executable,
            "train.py",
            str(CONFIG),
            *common,
            f"train.channels_last={chosen}",
            f"train.out_dir={tmp_path / 'single'}",
        ],
        cwd=REPO,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stdout + single.stderr
    a, b = (
        load_file(tmp_path / "single" / "model.safetensors"),
        load_file(tmp_path / "ddp" / "model.safetensors"),
    )
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)

"""Stopping a run as people do: Ctrl-C (SIGINT) or SIGTERM finishes the step in progress,
checkpoints it, releases the run folder, says in one line where the run stopped and the
command that resumes it, and exits with 128 + the signal; the resumed run ends with the
weights of an uninterrupted one, bit for bit. A second signal stops at once, except while
that checkpoint is written; the ablation runner stops too instead of going on to its next run."""

import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from zoo.ablate import load_matrix, plan, run_matrix
from zoo.engine import RunInterrupted, train
from zoo.engine import trainer as trainer_module
from zoo.engine.checkpoint import load_checkpoint
from zoo.engine.run_folder import RunLock

from .conftest import REPO, run_env
from .test_ablate import _matrix
from .test_run_safety import config, steps_logged
from .test_trainer import _train_cli

MAX_STEPS = 12
STEPS = [f"train.max_steps={MAX_STEPS}", "train.log_every_steps=1"]  # no checkpoint before the end


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The weights of the run left alone."""
    out = tmp_path_factory.mktemp("reference")
    proc = _train_cli(out, *STEPS)
    assert proc.wait(timeout=300) == 0, proc.stdout.read()
    return load_file(out / "model.safetensors")


def wait_for_step(out, step: int, proc) -> None:
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if max(steps_logged(out), default=0) >= step:
                return
        except (OSError, ValueError):  # not written yet, or a line being written
            pass
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"the run did not reach step {step}: {proc.communicate()[0]}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_checkpoints_the_last_step_and_the_printed_resume_is_exact(tmp_path, reference, sig):
    out = tmp_path / "run"
    proc = _train_cli(out, *STEPS)
    wait_for_step(out, 2, proc)
    proc.send_signal(sig)
    text = proc.communicate(timeout=300)[0]
    assert proc.returncode == 128 + sig, text
    assert "Traceback" not in text, text
    stopped_at = load_checkpoint(out / "last.ckpt")["step"]
    assert 2 <= stopped_at < MAX_STEPS and not (out / "model.safetensors").exists()
    assert steps_logged(out)[-1] == stopped_at  # the step in progress finished, and no other
    (line,) = [line for line in text.splitlines() if line.startswith("stopped")]
    where = (
        f"stopped at step {stopped_at} of {MAX_STEPS} (epoch 0) by {sig.name}; checkpoint {out / 'last.ckpt'}"
    )
    assert line.startswith(f"{where}; resume: python "), line
    RunLock(out).acquire().release()  # the folder is free

    command = shlex.split(line.split("; resume: ", 1)[1])
    assert command[-1] == "--resume"
    resumed = subprocess.run(
        [sys.executable, *command[1:]], cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed from {out / 'last.ckpt'} at step {stopped_at}" in resumed.stdout
    weights = load_file(out / "model.safetensors")
    assert weights.keys() == reference.keys()
    for k in reference:
        assert torch.equal(weights[k], reference[k]), k


# -- in process: what the signals do at each moment ------------------------------------------


def signal_after_steps(monkeypatch, signals: dict[int, list[int]]) -> None:
    """Send this process ``signals[n]`` as step n ends (inside the step, before the loop's check)."""
    real = trainer_module.train_step

    def step(run, batch, epoch):
        loss = real(run, batch, epoch)
        for sig in signals.get(run.step, []):
            os.kill(os.getpid(), sig)
        return loss

    monkeypatch.setattr(trainer_module, "train_step", step)


def test_a_second_signal_while_the_checkpoint_is_written_waits_for_it(tmp_path, monkeypatch):
    signal_after_steps(monkeypatch, {2: [signal.SIGINT]})
    real_save = trainer_module.save_checkpoint

    def save(state, path):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again, as the checkpoint is being written
        real_save(state, path)

    monkeypatch.setattr(trainer_module, "save_checkpoint", save)
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted, match=r"^stopped at step 2 of 4 \(epoch 0\) by SIGINT;") as stop:
        train(config(tmp_path, "train.max_steps=4"))
    assert (stop.value.step, stop.value.at_once, stop.value.exit_status) == (2, False, 130)
    assert load_checkpoint(tmp_path / "last.ckpt")["step"] == 2
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == previous
    RunLock(tmp_path).acquire().release()


def test_a_second_signal_in_a_step_stops_at_once_at_the_last_checkpoint(tmp_path, monkeypatch):
    signal_after_steps(monkeypatch, {3: [signal.SIGINT, signal.SIGINT]})
    with pytest.raises(
        RunInterrupted,
        match=r"stopped at once by a second SIGINT after step 3 of 4 \(epoch 0\); checkpoint .* \(step 2\)$",
    ) as stop:
        train(config(tmp_path, "train.max_steps=4", "train.ckpt_every_steps=2"))
    assert (stop.value.step, stop.value.at_once) == (2, True)
    assert load_checkpoint(tmp_path / "last.ckpt")["step"] == 2
    assert [p.name for p in tmp_path.glob(".*.tmp")] == []
    RunLock(tmp_path).acquire().release()


def test_a_signal_while_the_run_is_built_stops_before_its_first_step(tmp_path, monkeypatch):
    real_build = trainer_module.build_run

    def build(*args):
        run = real_build(*args)
        os.kill(os.getpid(), signal.SIGINT)
        return run

    monkeypatch.setattr(trainer_module, "build_run", build)
    with pytest.raises(RunInterrupted, match=r"at step 0 of 2 .*; no checkpoint written yet$"):
        train(config(tmp_path, "train.max_steps=2"))
    assert not (tmp_path / "last.ckpt").exists() and not (tmp_path / "metrics.jsonl").exists()


def test_an_interrupted_matrix_runner_stops_instead_of_going_on(tmp_path, monkeypatch):
    """``run_matrix`` goes on after a failed run (``except Exception``); a stopped one is no
    failure, and the runner stops: ``RunInterrupted`` is a ``KeyboardInterrupt``."""
    m = load_matrix(_matrix(tmp_path, seeds=[0]))
    signal_after_steps(monkeypatch, {1: [signal.SIGINT]})
    with pytest.raises(RunInterrupted):
        run_matrix(m)
    first, second = plan(m)
    assert (first.state(), second.state()) == ("interrupted", "new")
    assert load_checkpoint(first.out_dir / "last.ckpt")["step"] == 1

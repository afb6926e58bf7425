"""What a run guarantees: no lost or silently wrong work (used folders, locks, resume with a
changed config, NaN, corrupted checkpoints, leftovers of kills), clear checkpoint errors, the
usual file modes, and one device for everything."""

import errno
import json
import os
import subprocess
import sys

import pytest
import torch

import zoo._io
from zoo.config import ConfigError, load_config
from zoo.engine import CheckpointError, NonFiniteLossError, RunFolderError, train
from zoo.engine import trainer as trainer_module
from zoo.engine.autotune import Trial
from zoo.engine.checkpoint import load_checkpoint, save_checkpoint, write_json
from zoo.engine.distributed import DistInfo, describe_device, resolve_device
from zoo.engine.tasks import ClassificationTask

from .conftest import REPO
from .test_trainer import CONFIG, TINY

FAST = [*TINY, "train.ema=false", "data.random_erasing=0.0", "train.log_every_steps=1"]


def config(out, *extra):
    return load_config(CONFIG, [*FAST, f"train.out_dir={out}", *extra])


def steps_logged(out) -> list[int]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r.get("kind") == "train"]


# -- 1. a used folder ------------------------------------------------------------------------


def test_a_second_run_into_a_used_folder_is_refused(tmp_path):
    train(config(tmp_path, "train.max_steps=3"))
    before = (tmp_path / "last.ckpt").read_bytes(), (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(RunFolderError, match=r"already holds a run \(last.ckpt at step 3\).*--resume"):
        train(config(tmp_path, "train.max_steps=2"))
    assert ((tmp_path / "last.ckpt").read_bytes(), (tmp_path / "metrics.jsonl").read_text()) == before


def test_a_folder_killed_before_its_first_checkpoint_starts_afresh(tmp_path):
    """The ablation runner's contract: config.json and a log but no checkpoint hold no work;
    the run starts there from scratch (with or without resume) and its log reads as one run."""
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n{"kind": "train", "st')
    train(config(tmp_path, "train.max_steps=2"))
    assert steps_logged(tmp_path) == [1, 2]


# -- 2. a lock on the run folder -----------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from zoo.engine.run_folder import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_running_folder_is_locked_and_a_dead_holder_is_not(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=f"in use by another run \\(process {holder.pid} holds"):
            train(config(tmp_path, "train.max_steps=1"))
        assert not (tmp_path / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # Killed: its lock file stays, naming it, but the lock died with it.
    assert (tmp_path / "train.lock").read_text().strip() == str(holder.pid)
    train(config(tmp_path, "train.max_steps=1"))
    assert (tmp_path / "model.safetensors").exists()


# -- 3. resume with a changed config ---------------------------------------------------------


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run stopped at step 2 of 2 epochs' worth, to resume in copies."""
    out = tmp_path_factory.mktemp("stopped")
    train(config(out, "train.max_steps=2", "schedule.epochs=1"))
    return out


def copy_run(src, dst):
    dst.mkdir()
    for name in ("last.ckpt", "config.json", "metrics.jsonl"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


@pytest.mark.parametrize(
    "change, refused",
    [
        ("optim.lr=0.5", "optim.lr: 0.1 -> 0.5"),
        ("optim.opt=adamw", "optim.opt: 'sgd' -> 'adamw'"),
        ("model.name=resnet32", "model.name: 'resnet20' -> 'resnet32'"),
        ("data.batch_size=16", "data.batch_size: 32 -> 16"),
        ("train.seed=1", "train.seed: 0 -> 1"),
        ("schedule.epochs=0", None),  # a range error before anything
    ],
)
def test_a_resume_that_cannot_be_honoured_is_refused(stopped_run, tmp_path, change, refused):
    run = copy_run(stopped_run, tmp_path / "run")
    config_before = (run / "config.json").read_text()
    with pytest.raises(ConfigError, match=(refused or "schedule.epochs: expected").replace("(", r"\(")):
        train(config(run, "train.max_steps=4", "schedule.epochs=1", change), resume=True)
    assert (run / "config.json").read_text() == config_before  # written only after the checkpoint loads


def test_more_epochs_on_resume_rebuild_the_schedule(stopped_run, tmp_path):
    run = copy_run(stopped_run, tmp_path / "run")
    train(config(run, "train.max_steps=4", "schedule.epochs=3"), resume=True)
    assert load_checkpoint(run / "last.ckpt")["step"] == 4
    assert json.loads((run / "config.json").read_text())["schedule"]["epochs"] == 3
    with pytest.raises(ConfigError, match="schedule.epochs: 3 -> 2"):
        train(config(run, "train.max_steps=5", "schedule.epochs=2"), resume=True)


# -- 4. NaN ----------------------------------------------------------------------------------


def nan_at_call(monkeypatch, n):
    calls = {"n": 0}
    real_loss = ClassificationTask.loss

    def loss(self, model, batch, cfg):
        calls["n"] += 1
        out = real_loss(self, model, batch, cfg)
        return out * float("nan") if calls["n"] == n else out

    monkeypatch.setattr(ClassificationTask, "loss", loss)


def test_nan_weights_are_never_checkpointed(tmp_path):
    cfg = config(tmp_path, "optim.lr=.nan", "train.ckpt_every_steps=1", "train.max_steps=5")
    with pytest.raises(NonFiniteLossError, match="NaN or inf after step 1.*No checkpoint was written yet"):
        train(cfg)
    assert not (tmp_path / "last.ckpt").exists()


def test_the_nan_message_names_the_real_checkpoint(tmp_path, monkeypatch):
    nan_at_call(monkeypatch, 7)
    with pytest.raises(NonFiniteLossError, match="No checkpoint was written yet"):  # default: every 500
        train(config(tmp_path / "a", "train.max_steps=20"))
    with pytest.raises(NonFiniteLossError, match=f"{tmp_path / 'b' / 'last.ckpt'} at step 5, is kept"):
        nan_at_call(monkeypatch, 7)
        train(config(tmp_path / "b", "train.max_steps=20", "train.ckpt_every_steps=5"))


# -- 5. checksums and unreadable checkpoints -------------------------------------------------


def test_a_flipped_byte_is_refused(stopped_run, tmp_path):
    data = bytearray((stopped_run / "last.ckpt").read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the serialized state
    path = tmp_path / "last.ckpt"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"step: 3\n", "is not a checkpoint: train.py writes"),
        (None, "not a readable checkpoint"),
    ],
)
def test_an_unreadable_checkpoint_names_its_path(stopped_run, tmp_path, content, message):
    run = copy_run(stopped_run, tmp_path / "run")
    whole = (run / "last.ckpt").read_bytes()
    (run / "last.ckpt").write_bytes(whole[: len(whole) // 3] if content is None else content)
    with pytest.raises(CheckpointError, match=message) as err:
        train(config(run, "train.max_steps=4", "schedule.epochs=1"), resume=True)
    assert str(run / "last.ckpt") in str(err.value)


def test_a_full_disk_says_so_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint({"model": {}, "step": 1, "config": {}}, path)
    before = path.read_bytes()

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zoo._io.os, "write", full)
    with pytest.raises(OSError, match=f"the disk is full: could not write {path}"):
        save_checkpoint({"model": {}, "step": 2, "config": {}}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_files_keep_the_usual_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json({"a": 1}, tmp_path / "x.json")
        save_checkpoint({"model": {}, "step": 1, "config": {}}, tmp_path / "last.ckpt")
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "last.ckpt").stat().st_mode & 0o777 == 0o644


# -- 6. leftovers of kills ---------------------------------------------------------------------


def test_a_resumed_run_cleans_orphans_and_logs_as_one_run(tmp_path, monkeypatch):
    nan_at_call(monkeypatch, 5)  # stops at step 4 with its checkpoint at step 3
    with pytest.raises(NonFiniteLossError):
        train(config(tmp_path, "train.max_steps=6", "train.ckpt_every_steps=3"))
    monkeypatch.undo()
    assert steps_logged(tmp_path) == [1, 2, 3, 4]
    orphan = tmp_path / ".last.ckpt.0badc0de.tmp"
    orphan.write_bytes(b"half a checkpoint")
    train(config(tmp_path, "train.max_steps=6", "train.ckpt_every_steps=3"), resume=True)
    assert steps_logged(tmp_path) == [1, 2, 3, 4, 5, 6]
    assert not orphan.exists()


# -- one device for everything ---------------------------------------------------------------


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="has 2 GPU"):
        resolve_device("cuda:2")
    with pytest.raises(ConfigError, match="train.device: expected auto, cpu, cuda or cuda:N"):
        load_config(None, ["train.device=gpu"])


def test_nothing_bypasses_the_chosen_device(tmp_path, monkeypatch):
    """The trainer's device reaches the model, every batch, the speed probe and the evaluator.
    ``cpu:0`` stands in for a GPU: it computes on the CPU but differs from a default ``cpu``."""
    chosen = torch.device("cpu", 0)
    assert chosen != torch.device("cpu")
    seen = {"batches": set(), "evaluate": set(), "probe": set()}
    monkeypatch.setattr(trainer_module, "init_distributed", lambda spec: DistInfo(device=chosen))
    real_to_device = ClassificationTask.to_device

    def to_device(self, batch, device, channels_last):
        seen["batches"].add(device)
        return real_to_device(self, batch, device, channels_last)

    def evaluate(model, loader, task, info, channels_last=False, device=None):
        seen["evaluate"].add(device)
        return {"top1": 0.0}

    def probe(model, batch, task, cfg, device, settings, *args, **kwargs):
        seen["probe"].add(device)
        return [Trial(b, c, 1.0 + i, 3, 1.0) for i, (b, c) in enumerate(settings)]

    monkeypatch.setattr(ClassificationTask, "to_device", to_device)
    monkeypatch.setattr(trainer_module, "evaluate", evaluate)
    monkeypatch.setattr(trainer_module, "time_settings", probe)
    train(config(tmp_path, "train.max_steps=2", "train.eval_every_epochs=1", "train.channels_last=auto"))
    assert seen == {"batches": {chosen}, "evaluate": {chosen}, "probe": {chosen}}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["device"], summary["torch"]) == ("cpu", torch.__version__)


def test_the_summary_names_the_gpu(monkeypatch):
    """A run's minutes are only comparable on the same hardware, so the summary names it."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"Fake GPU {device.index}")
    assert describe_device(torch.device("cuda", 1)) == "cuda:1 (Fake GPU 1)"
    assert describe_device(torch.device("cpu")) == "cpu"


@pytest.mark.parametrize("name", ["model.safetensors", "last.ckpt"])
def test_eval_of_a_file_that_is_not_a_run_names_it(stopped_run, tmp_path, name):
    from zoo.engine import load_run

    path = tmp_path / name
    path.write_bytes(
        (stopped_run / "last.ckpt").read_bytes()[:100] if name == "last.ckpt" else b"root:x:0:0\n"
    )
    with pytest.raises(CheckpointError) as err:
        load_run(path)
    assert str(path) in str(err.value)
    pickle = tmp_path / "renamed.safetensors"
    pickle.write_bytes((stopped_run / "last.ckpt").read_bytes())  # a torch pickle under the wrong name
    with pytest.raises(
        CheckpointError, match=r"not a valid safetensors file \(it is a zip archive, as torch.save"
    ):
        load_run(pickle)


def test_save_weights_gives_the_same_bytes_for_the_same_content(tmp_path):
    """The metadata's key order (safetensors keeps it in a hash map) does not change the file."""
    from safetensors import safe_open

    from zoo.engine.checkpoint import save_weights

    state = {"conv.weight": torch.arange(6.0).reshape(2, 3), "fc.bias": torch.ones(2)}
    meta = {f"key{i}": {"n": i, "nested": {"b": 1, "a": [i]}} for i in range(8)}
    save_weights(state, tmp_path / "a.safetensors", meta)
    save_weights(state, tmp_path / "b.safetensors", dict(reversed(meta.items())))
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    with safe_open(str(tmp_path / "b.safetensors"), "pt") as f:
        assert {k: json.loads(v) for k, v in f.metadata().items()} == meta
        assert torch.equal(f.get_tensor("conv.weight"), state["conv.weight"])


def test_a_run_loads_from_either_of_its_files(stopped_run):
    from zoo.engine import load_run

    from_weights, from_checkpoint = (
        load_run(stopped_run / "model.safetensors"),
        load_run(stopped_run / "last.ckpt"),
    )
    assert from_weights.cfg == from_checkpoint.cfg and from_weights.info == from_checkpoint.info
    a, b = from_weights.model.state_dict(), from_checkpoint.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

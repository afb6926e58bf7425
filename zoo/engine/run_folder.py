"""The run folder: the files a run writes, its lock, and reading them back.

``train`` writes ``config.json`` (the resolved config), ``metrics.jsonl`` (one JSON record per
log step and evaluation), ``last.ckpt`` (the checkpoint a resumed run continues from),
``model.safetensors`` and ``summary.json`` (when it finishes) and holds ``train.lock`` while
it runs. The ablation runner adds ``diverged.json`` (a run that stopped on a non-finite loss)
and holds ``.ablate.lock`` while it trains the folder's run. Everything that reads a run folder
(the runner, its report, the benchmark, the time-to-accuracy picture) takes the names and the
readers from here.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from .checkpoint import load_checkpoint

CHECKPOINT, CONFIG, METRICS, WEIGHTS, SUMMARY, LOCK = (
    "last.ckpt",
    "config.json",
    "metrics.jsonl",
    "model.safetensors",
    "summary.json",
    "train.lock",
)
DIVERGED, RUNNER_LOCK = "diverged.json", ".ablate.lock"


class RunFolderError(RuntimeError):
    """The run folder is in use, or holds a run that this call would overwrite."""


class RunLock:
    """An exclusive lock on a run folder, held by this process until ``release`` (or its
    death: the kernel drops a ``flock`` with the process, so a killed run's lock is stale by
    construction and the next run simply takes it). The file names the holder's PID."""

    def __init__(self, folder: Path, name: str = LOCK):
        self.path = folder / name
        self._fd: int | None = None
        self.holder = ""  # the PID the file named when try_acquire found it held

    def try_acquire(self) -> bool:
        """Take the lock if no other process holds it; False (and nothing changed) if one does."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # for people: who holds it
        self._fd = fd
        return True

    def acquire(self) -> RunLock:
        if not self.try_acquire():
            raise RunFolderError(
                f"{self.path.parent} is in use by another run (process {self.holder} holds {self.path}); "
                "wait for it to finish, or choose another train.out_dir"
            )
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def check_fresh_folder(out: Path) -> None:
    """A run without ``--resume`` may start only where no run's work would be lost: a folder
    with a checkpoint, weights or a summary is refused. (A folder with only a config and a log,
    from a run killed before its first checkpoint, holds nothing to resume and is restarted.)"""
    found = [name for name in (CHECKPOINT, WEIGHTS, SUMMARY) if (out / name).exists()]
    if found:
        step = ""
        if (out / CHECKPOINT).exists():
            try:
                step = f" (last.ckpt at step {load_checkpoint(out / CHECKPOINT)['step']})"
            except Exception:
                step = ""
        raise RunFolderError(
            f"train.out_dir {out} already holds a run{step}: {', '.join(found)}. Continue it with "
            "--resume, or choose a new train.out_dir (or move the old folder aside yourself)"
        )


def truncate_log(path: Path, step: int) -> None:
    """Keep the records of ``metrics.jsonl`` up to ``step`` (a resumed run's log then reads as
    one run); a fresh start (``step`` 0) empties it."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if step > 0 and record.get("step", 0) <= step:
            kept.append(line)
    path.write_text("".join(f"{line}\n" for line in kept))


class MetricsLog:
    """JSON lines, one record per log step or evaluation, appended and flushed at once."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, **record: Any) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def read_metrics(folder: Path) -> list[dict]:
    """``metrics.jsonl`` as one run: where a resumed run logged a step again, the later record
    wins; a line cut short by a kill is skipped. No log: an empty list."""
    path = folder / METRICS
    if not path.is_file():
        return []
    keyed: dict[tuple, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        keyed[(r.get("kind"), r.get("which"), r.get("step"), r.get("amp_bf16"), r.get("channels_last"))] = r
    return sorted(keyed.values(), key=lambda r: (r.get("step", -1), str(r.get("kind"))))


def read_json(folder: Path, name: str) -> dict:
    """One of the folder's JSON files (``SUMMARY``, ``CONFIG``, ...); a missing or broken one
    is an error that names it."""
    path = folder / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"{path}: not found") from None
    except json.JSONDecodeError as e:
        raise RunFolderError(f"{path}: not valid JSON ({e})") from None

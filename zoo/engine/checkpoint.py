"""Checkpoints and weights, written atomically and read without unpickling.

Writes go through ``zoo._io.atomic_write`` (a temporary file in the same folder, created with
the usual umask, flushed, then renamed over the target): a run killed mid-write leaves the
previous file intact, and ``remove_orphans`` clears the temporary files such a kill leaves
behind.

A checkpoint file holds the serialized training state as one byte payload together with its
SHA-256, checked on every load, so a corrupted file is refused instead of resumed. It loads
with ``torch.load(weights_only=True)``; exported weights are safetensors.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from .._builder import create_model
from .._io import atomic_write
from ..config import RunConfig, from_saved
from ..data.registry import DatasetInfo
from ..weights import WeightsError, parse_safetensors, pickled_kind

FORMAT = "zoo-checkpoint-2"  # {"format", "sha256", "payload": uint8 tensor of torch.save(state)}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


def _serialize(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    payload = _serialize(state)
    wrapped = {
        "format": FORMAT,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
    }
    atomic_write(path, _serialize(wrapped))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The state saved by ``save_checkpoint`` (or by the versions before checksums), checked.
    Anything else (empty, text, truncated, a flipped byte) is a ``CheckpointError``."""
    path = Path(path)
    hint = "Move it aside to start over, or resume from a copy of the run."
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({err.strerror})") from None
    if not data:
        raise CheckpointError(f"{path} is empty, not a checkpoint (a write that never finished?). {hint}")
    if not pickled_kind(data):
        raise CheckpointError(
            f"{path} is not a checkpoint: train.py writes them with torch.save (a zip archive), this file "
            f"begins {data[:12]!r}. {hint}"
        )
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # zip, unpickling and EOF errors alike: the file is not a checkpoint
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]}). {hint}"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint. {hint}")
    if obj.get("format") == FORMAT:
        payload = obj["payload"].numpy().tobytes()
        if hashlib.sha256(payload).hexdigest() != obj["sha256"]:
            raise CheckpointError(f"{path}: checksum mismatch, the file is corrupted. {hint}")
        obj = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    missing = [k for k in ("model", "step", "config") if k not in obj]
    if missing:
        raise CheckpointError(f"{path} is not a training checkpoint (no {', '.join(missing)}). {hint}")
    return obj


def save_weights(
    state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, Any] | None = None
) -> None:
    """A safetensors file of contiguous CPU tensors; metadata values are stored as JSON strings.

    The same tensors and metadata always give the same bytes (so the same sha256): the
    metadata keys are written sorted (see ``_sorted_metadata``).
    """
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    meta = {k: json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()}
    atomic_write(path, _sorted_metadata(safetensors_bytes(tensors), meta))


def _sorted_metadata(data: bytes, meta: dict[str, str]) -> bytes:
    """``data`` (a safetensors file without metadata) with ``meta`` in its header, keys sorted.

    safetensors keeps metadata in a Rust hash map, whose order changes from one call to the
    next, so it is written here instead. The header is JSON after an 8-byte little-endian
    length, padded with spaces to a multiple of 8 bytes; the tensors' entries and bytes are
    kept as they are.
    """
    if not meta:
        return data
    size = int.from_bytes(data[:8], "little")
    header = _header(data)
    raw = json.dumps({"__metadata__": dict(sorted(meta.items())), **header}, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data[8 + size :]


def _header(data: bytes) -> dict[str, Any]:
    """The JSON header of a safetensors file's bytes (checked by a parse before)."""
    return json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])


def write_json(obj: Any, path: str | Path) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


# -- rebuilding a run from its files ---------------------------------------------------------


def model_from_config(cfg: RunConfig, info: DatasetInfo, load_backbone: bool = True) -> torch.nn.Module:
    """The model a run config describes, sized for its dataset (``model.args`` win).

    ``model.args.backbone_weights`` (a ``create_model`` argument like the others) starts the
    backbone from those weights. ``load_backbone=False`` builds the same architecture without
    reading them: for a caller that then loads every weight of the model from a checkpoint or a
    run's weights, which must not need the backbone's file any more.
    """
    args = {"num_classes": info.num_classes, "in_chans": info.in_chans, **cfg.model.args}
    if not load_backbone:
        args.pop("backbone_weights", None)
    return create_model(cfg.model.name, **args)


@dataclass
class SavedRun:
    cfg: RunConfig
    info: DatasetInfo
    model: torch.nn.Module  # with the run's weights (the EMA's when it kept one), on the CPU


def saved_info(info: dict, cfg: RunConfig) -> DatasetInfo:
    """The dataset description a checkpoint or weights file carries (old untyped dicts too)."""
    return DatasetInfo.from_dict(info, name=cfg.data.dataset, task=cfg.task)


def load_run(path: str | Path) -> SavedRun:
    """A run's ``last.ckpt`` or exported ``model.safetensors``, rebuilt from the file alone."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            data = path.read_bytes()
        except OSError as err:
            raise CheckpointError(f"{path}: cannot read the weights ({err.strerror})") from None
        try:  # the weights module's reader: safetensors only, a pickle is named and refused
            weights = parse_safetensors(data, path)
        except WeightsError as err:
            raise CheckpointError(str(err)) from None
        meta = _header(data).get("__metadata__") or {}
        if "config" not in meta or "info" not in meta:
            raise CheckpointError(
                f"{path} has no training config in its metadata; it was not written by train.py"
            )
        cfg, info = from_saved(json.loads(meta["config"])), json.loads(meta["info"])
    else:
        state = load_checkpoint(path)
        cfg, info = from_saved(state["config"]), state["info"]
        weights = state["ema"] if state.get("ema") else state["model"]
    info = saved_info(info, cfg)
    model = model_from_config(cfg, info, load_backbone=False)  # every weight comes from the file
    try:
        model.load_state_dict({k.removeprefix("module."): v for k, v in weights.items()})
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit the model its config describes: {err}") from None
    return SavedRun(cfg, info, model)

"""Typed run configs: YAML recipes that extend a base, checked against dataclasses.

A recipe is a diff from its base (``_base_: ../base.yaml``, as in detectron2); command-line
overrides are ``section.key=value``. Unknown keys and wrong types are errors that name the
key and the close matches. The resolved config is a plain dict, saved with every run and
inside every checkpoint, so a run can be rebuilt from the checkpoint alone.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    pass


@dataclass
class ModelConfig:
    name: str = "resnet20"  # a registered architecture (zoo.list_models())
    # create_model kwargs: in_chans, norm, attn, ...; backbone_weights: NAME.TAG (or hf-hub:ORG/REPO)
    # starts a segmentation or detection model's backbone from those classification weights
    # (an argument like the others, so a matrix row can set it; runs restored from their own
    # checkpoint or weights do not read it again)
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    dataset: str = "fashion_mnist"  # fashion_mnist | mnist | cifar10 | cifar100 | camvid | bccd
    data_dir: str = ""  # where the dataset lives; empty: ZOO_DATA_DIR, then the known places
    train_split: str = "train"
    eval_split: str = "test"
    batch_size: int = 128  # global batch size (split across processes under torchrun)
    eval_batch_size: int = 500
    # Augmentation. Each task reads only some of these keys (Task.data_keys) and refuses a
    # config that sets one it ignores.
    hflip: bool = True  # random horizontal flip (every task)
    vflip: bool = False  # random vertical flip (detection)
    crop_padding: int = 4  # classification: random crop after zero padding by this many pixels (0: off)
    random_erasing: float = 0.0  # classification: probability per image
    # classification: random resized crop, the [min, max] fraction of the image's area a crop
    # covers ([]: off; set crop_padding: 0 with it), resampled to train_size
    rrc_scale: list[float] = field(default_factory=list)
    train_size: int = 0  # classification: side of the training crops (0: the images' own); eval keeps its own
    crop_size: list[int] = field(default_factory=list)  # segmentation/detection: [H, W] training crop
    scale_range: list[float] = field(default_factory=list)  # segmentation/detection: [min, max] random scale
    class_weights: list[float] = field(default_factory=list)  # segmentation: per-class loss weights


@dataclass
class OptimConfig:
    opt: str = "sgd"  # any timm optimizer name (sgd, adamw, lamb, ...)
    lr: float = 0.1
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = True
    clip_grad: float = 0.0  # max global grad norm (0: off)


@dataclass
class ScheduleConfig:
    epochs: int = 30
    sched: str = "cosine"  # timm scheduler name
    warmup_epochs: float = 1.0
    warmup_lr: float = 1e-4
    min_lr: float = 1e-5


@dataclass
class TrainConfig:
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms; resume gives identical weights
    label_smoothing: float = 0.0
    ema: bool = False  # keep an EMA of the weights (timm ModelEmaV3) and evaluate it too
    ema_decay: float = 0.999
    # Both change speed 2x or more either way, by model and by CPU. auto: time each setting on
    # the real model and batch at the start (zoo/engine/autotune.py) and keep the fastest; near
    # ties may go either way, so set both for bit-identical reruns (train.deterministic).
    channels_last: bool | Literal["auto"] = "auto"
    amp_bf16: bool | Literal["auto"] = "auto"  # bf16 autocast
    threads: int = 0  # torch.set_num_threads (0: leave as is)
    device: str = "auto"  # auto (CUDA when available, else CPU) | cpu | cuda | cuda:N
    out_dir: str = "runs/default"
    ckpt_every_steps: int = 500  # 0: only at epoch ends
    eval_every_epochs: int = 1  # and always at the end; 0: never evaluate
    log_every_steps: int = 50
    max_steps: int = 0  # stop after this many optimizer steps (0: run all epochs); for tests and probes


@dataclass
class RunConfig:
    task: str = "classification"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# -- type checking ------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    """``bool | Literal['auto']`` -> "bool or 'auto'": the words an error message needs."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _check_type(key: str, value: Any, tp: Any) -> Any:
    """Return ``value`` coerced to ``tp`` where that is lossless (int -> float), else raise."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _check_type(key, value, arg)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif tp is Any:
        return value
    elif origin is Literal:
        if value in typing.get_args(tp) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp in (int, str, bool):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
    elif origin is list:
        if isinstance(value, (list, tuple)):
            (item,) = typing.get_args(tp)
            return [_check_type(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _unknown_key(key: str, choices) -> ConfigError:
    near = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(choices), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(near)}?" if near else f" Known keys: {', '.join(sorted(choices))}."
    return ConfigError(f"unknown config key {key!r}.{hint}")


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown_key(prefix + key, names)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _check_type(prefix + key, value, tp)
    return cls(**kwargs)


# -- loading ------------------------------------------------------------------------------


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads YAML 1.2 floats such as ``1e-3`` (PyYAML follows
    YAML 1.1, where a float needs a dot, so ``1e-3`` would be the string '1e-3')."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + (getattr(err, "problem", None) or str(err).splitlines()[0])


def read_yaml(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """A recipe with its ``_base_`` chain resolved (paths relative to the file)."""
    path = Path(path)
    if path.resolve() in _chain:
        loop = " -> ".join(str(p) for p in (*_chain, path.resolve()))
        raise ConfigError(f"circular _base_: {loop}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sections (task:, model:, data:, ...) at the top level, "
            f"got a {type(data).__name__}"
        )
    base = data.pop("_base_", None)
    if base is not None:
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{path}: _base_ must be one file name, got {base!r}")
        data = _merge(read_yaml(path.parent / base, (*_chain, path.resolve())), data)
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'optim.lr=0.05'`` -> (['optim', 'lr'], 0.05); the value is parsed as YAML."""
    key, eq, raw = text.partition("=")
    keys = key.strip().split(".")
    if not eq or not all(k.strip() for k in keys):
        raise ConfigError(f"override must look like section.key=value, got {text!r}")
    try:
        return [k.strip() for k in keys], yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({_yaml_problem(err)})") from None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k} is not a section")
        node[keys[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    data = read_yaml(path) if path else {}
    return from_dict(apply_overrides(data, list(overrides)))


def from_dict(data: dict) -> RunConfig:
    cfg = _build(RunConfig, data)
    check_ranges(cfg)
    return cfg


_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def check_ranges(cfg: RunConfig) -> None:
    """Values of the right type but out of range, refused before anything runs."""

    def need(ok: bool, key: str, expected: str) -> None:
        if not ok:
            section, name = key.split(".")
            value = getattr(getattr(cfg, section), name)
            raise ConfigError(f"{key}: expected {expected}, got {value!r}")

    d, t, s, o = cfg.data, cfg.train, cfg.schedule, cfg.optim
    need(s.epochs >= 1, "schedule.epochs", "an integer >= 1")
    need(s.warmup_epochs >= 0, "schedule.warmup_epochs", "a number >= 0")
    need(d.batch_size >= 1, "data.batch_size", "an integer >= 1")
    need(d.eval_batch_size >= 1, "data.eval_batch_size", "an integer >= 1")
    need(d.crop_padding >= 0, "data.crop_padding", "an integer >= 0")
    need(0 <= d.random_erasing <= 1, "data.random_erasing", "a probability in [0, 1]")
    need(
        not d.rrc_scale or (len(d.rrc_scale) == 2 and 0 < d.rrc_scale[0] <= d.rrc_scale[1] <= 1),
        "data.rrc_scale",
        "[] (off) or [min, max] with 0 < min <= max <= 1",
    )
    need(not (d.rrc_scale and d.crop_padding), "data.crop_padding", "0 when data.rrc_scale is set (one crop)")
    need(d.train_size >= 0, "data.train_size", "an integer >= 0 (0: the images' own size)")
    need(not d.train_size or bool(d.rrc_scale), "data.train_size", "0 unless data.rrc_scale is set")
    need(math.isfinite(o.clip_grad) and o.clip_grad >= 0, "optim.clip_grad", "a number >= 0 (0: off)")
    need(t.log_every_steps >= 1, "train.log_every_steps", "an integer >= 1")
    need(t.ckpt_every_steps >= 0, "train.ckpt_every_steps", "an integer >= 0 (0: at epoch ends only)")
    need(t.eval_every_epochs >= 0, "train.eval_every_epochs", "an integer >= 0 (0: never)")
    need(t.max_steps >= 0, "train.max_steps", "an integer >= 0 (0: all epochs)")
    need(t.threads >= 0, "train.threads", "an integer >= 0 (0: leave as is)")
    need(0 <= t.ema_decay < 1, "train.ema_decay", "a number in [0, 1), typically 0.99-0.9999")
    need(0 <= t.label_smoothing < 1, "train.label_smoothing", "a number in [0, 1)")
    need(bool(_DEVICE.match(t.device)), "train.device", "auto, cpu, cuda or cuda:N")


# Keys of configs saved by earlier versions (config.json, checkpoints, weights metadata).
REMOVED_KEYS = {"data": ("num_workers",)}  # read nowhere


def from_saved(data: dict) -> RunConfig:
    """A config saved by this or an earlier version: keys since removed are dropped, and a
    detection run's ``data.hflip``, which then also meant a vertical flip, becomes
    ``hflip`` + ``vflip``."""
    data = copy.deepcopy(data)
    for section, keys in REMOVED_KEYS.items():
        for key in keys:
            data.get(section, {}).pop(key, None)
    d = data.get("data", {})
    if data.get("task") == "detection" and "vflip" not in d:
        d["vflip"] = d.get("hflip", DataConfig.hflip)
    return from_dict(data)


def to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)

"""The weights manifest: one typed, validated entry per published weight.

``weights_manifest.json`` (at the top of the repository; the build copies it into the package,
so an installed zoo ships it: setup.py; ``$ZOO_MANIFEST`` names another) is a JSON list of ``WeightsEntry`` objects, one per ``arch.tag``. Reading it
checks every entry against its type hints: an unknown or missing field (with a close match
named), a wrong type, an unknown architecture, or an architecture with no or two default tags
is an error that lists every problem at once. Writing it validates first and replaces the
file atomically. zoo.weights re-exports everything here.

Plain typed data: of zoo it imports only the registry (itself importing nothing of zoo), to
check names and tasks against the registered architectures.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import statistics
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._io import atomic_write
from ._paths import checkout_root
from ._registry import TASKS, close_matches, get_entry, is_model, list_architectures, split_name
from ._tasks import HFLIP_TTA_TASKS, hflip_metrics

MANIFEST_NAME = "weights_manifest.json"
# An installed package's copy, put there by the build (setup.py); a checkout has none.
PACKAGED_MANIFEST = Path(__file__).resolve().parent / MANIFEST_NAME
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
FITS = ("crop", "squash")


class ManifestError(ValueError):
    """The manifest does not parse or does not describe a consistent set of weights."""


@dataclass(frozen=True)
class InputSpec:
    """What the weights take as input, and the eval preprocessing that produces it."""

    in_chans: int
    input_size: list[int]  # [H, W] the model sees
    mean: list[float]  # per channel, applied after scaling pixels to [0, 1]
    std: list[float]
    interpolation: str  # for the resize: nearest, bilinear or bicubic
    resize_size: int | None  # shorter side resized to this, then center-cropped; null: no resize
    # "squash": any picture is resized to input_size on both sides, aspect ratio not kept (the
    # weights trained on squashed photos); "crop": resize_size's shorter side and centre crop
    fit: str = "crop"


@dataclass(frozen=True)
class SeedSpread:
    """The same recipe trained with several seeds: each seed's value of one metric, and their
    mean and sample standard deviation (null with one seed). The published file is one of them."""

    metric: str  # a key of the entry's metrics, e.g. "top1"
    values: dict[str, float]  # seed -> the run's own final evaluation of that metric
    mean: float
    std: float | None

    @classmethod
    def of(cls, metric: str, values: dict[str, float]) -> SeedSpread:
        vals = list(values.values())
        std = round(statistics.stdev(vals), 4) if len(vals) > 1 else None
        return cls(
            metric, {str(k): float(v) for k, v in values.items()}, round(statistics.fmean(vals), 4), std
        )


@dataclass(frozen=True)
class BackboneSource:
    """The weights a model's backbone started from (``create_model(..., backbone_weights=...)``):
    a manifest name (``resnet18.imagenette``) or ``hf-hub:ORG/REPO``, and that file's sha256."""

    name: str
    sha256: str


@dataclass(frozen=True)
class Provenance:
    """How a weight was made and measured: what reproduces it (the recipe and the exact
    commands), where, how long and at which commit it trained, over which seeds, and from
    which backbone weights. The one record of it: the manifest entry, ``zoo.weights.add_entry``,
    ``python -m zoo.weights add`` and ``python -m zoo.ablate publish`` all pass this."""

    config: str  # the YAML recipe, relative to the repository root
    command: str  # the exact training command
    eval_command: str  # the exact command that measured the metrics
    train_wall_time_s: float
    hardware: str
    git_commit: str  # add_entry fills "" with the HEAD of the repository holding the manifest
    seeds: SeedSpread | None = None  # the spread over seeds, where the recipe was run with several
    backbone_weights: BackboneSource | None = None  # what the backbone started from; None: scratch


@dataclass(frozen=True)
class WeightsEntry:
    """One weight file and everything needed to trust, use and reproduce it."""

    name: str  # "arch.tag"
    default: bool  # the tag create_model(arch, pretrained=True) picks: exactly one per arch
    file: str  # file name in the weights folder
    sha256: str
    size_bytes: int
    dtype: str  # of the floating-point tensors, e.g. "float32"
    num_params: int  # of the model built with num_classes, in_chans and model_args below
    task: str
    dataset: str
    split: str  # the split the metrics were measured on
    metrics: dict[str, float]
    num_classes: int
    label_names: list[str]  # class index -> name; [] when not recorded
    input: InputSpec
    model_args: dict[str, Any]  # further create_model kwargs the weights were trained with
    provenance: Provenance  # how it was made and measured
    license: str
    hf_repo_id: str  # "" until published
    hf_revision: str  # the Hub commit the weights were published at; "" until published

    @property
    def arch(self) -> str:
        return split_name(self.name)[0]


def manifest_path() -> Path:
    """``$ZOO_MANIFEST``, else the checkout's top-level manifest (a clone or an editable
    install), else the copy an installed package ships."""
    if os.environ.get("ZOO_MANIFEST"):
        return Path(os.environ["ZOO_MANIFEST"])
    root = checkout_root()
    return root / MANIFEST_NAME if root is not None else PACKAGED_MANIFEST


def load_manifest(path: str | Path | None = None) -> list[WeightsEntry]:
    """Every entry of the manifest (``path``, else ``manifest_path()``), validated."""
    path = Path(path or manifest_path())
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ManifestError(
            f"cannot read the weights manifest {path}: it is not UTF-8 text (byte {e.object[e.start]:#04x} "
            f"at offset {e.start}); a manifest is JSON in UTF-8"
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise ManifestError(f"cannot read the weights manifest {path}: {e}") from None
    return parse_manifest(data, source=str(path))


def parse_manifest(data: Any, source: str = "manifest") -> list[WeightsEntry]:
    """Typed entries from parsed JSON; every problem found is reported in one error."""
    if not isinstance(data, list):
        raise ManifestError(f"{source}: expected a JSON list of entries, got {type(data).__name__}")
    problems: list[str] = []
    entries = []
    for i, item in enumerate(data):
        label = f"entry {i}" + (f" ({item['name']})" if isinstance(item, dict) and "name" in item else "")
        entry = _from_dict(WeightsEntry, item, label, problems)
        if entry is not None:
            problems += [f"{label}: {p}" for p in _entry_problems(entry)]
            entries.append(entry)
    problems += _manifest_problems(entries)
    if problems:
        raise ManifestError(f"{source} is invalid:\n  " + "\n  ".join(problems))
    return entries


def _from_dict(cls: type, data: Any, where: str, problems: list[str]) -> Any:
    """Build dataclass ``cls`` from a JSON object, appending to ``problems`` instead of raising."""
    if not isinstance(data, dict):
        problems.append(f"{where}: expected an object, got {data!r}")
        return None
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    found = len(problems)
    for key in data:
        if key not in hints:
            near = difflib.get_close_matches(key, names, n=1)
            problems.append(
                f"{where}: unknown field {key!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
            )
    optional = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    missing = [n for n in names if n not in data and n not in optional]
    if missing:
        problems.append(f"{where}: missing field(s) {', '.join(map(repr, missing))}")
    values = {}
    for name in names:
        if name not in data:
            continue
        nested = _dataclass_in(hints[name])
        if nested is not None and data[name] is not None:
            values[name] = _from_dict(nested, data[name], f"{where}.{name}", problems)
            continue
        ok, values[name] = _coerce(data[name], hints[name])
        if not ok:
            problems.append(f"{where}.{name}: expected {hints[name]}, got {data[name]!r}")
    return cls(**values) if len(problems) == found else None


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass in hint ``tp`` (``X`` or ``X | None``), else None."""
    options = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    return next((o for o in options if dataclasses.is_dataclass(o)), None)


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check a parsed JSON value against a type hint; an int is accepted (as a float) where a float is."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            ok, coerced = _coerce(value, option)
            if ok:
                return True, coerced
        return False, value
    if tp is type(None):
        return value is None, value
    if origin is list:
        items = [_coerce(v, args[0]) for v in value] if isinstance(value, list) else [(False, None)]
        return all(ok for ok, _ in items), [v for _, v in items]
    if origin is dict:
        items = {k: _coerce(v, args[1]) for k, v in value.items()} if isinstance(value, dict) else {}
        return isinstance(value, dict) and all(ok for ok, _ in items.values()), {
            k: v for k, (_, v) in items.items()
        }
    if isinstance(value, bool) and tp is not bool:
        return False, value  # JSON true/false is not a number
    if tp is float and isinstance(value, int):
        return True, float(value)
    return isinstance(value, tp), value


def _seed_problems(s: SeedSpread, metrics: dict[str, float]) -> list[str]:
    """A spread must be over a recorded metric, and its mean and std must be those of its values."""
    if s.metric not in metrics:
        return [f"seeds.metric {s.metric!r} is not one of the metrics {sorted(metrics)}"]
    if not s.values:
        return ["seeds.values is empty"]
    vals = list(s.values.values())
    problems = []
    if abs(statistics.fmean(vals) - s.mean) > 1e-3:
        problems.append(f"seeds.mean {s.mean} is not the mean of {vals} ({statistics.fmean(vals):.4f})")
    std = statistics.stdev(vals) if len(vals) > 1 else None
    if (std is None) != (s.std is None) or (std is not None and abs(std - s.std) > 1e-3):
        problems.append(f"seeds.std {s.std} is not the sample standard deviation of {vals} ({std})")
    return problems


def _entry_problems(e: WeightsEntry) -> list[str]:
    """What one well-typed entry can still get wrong."""
    arch, tag = split_name(e.name)
    if not is_model(arch):
        near = close_matches(arch, list_architectures())
        return [f"unknown architecture {arch!r}" + (f" (did you mean {', '.join(near)}?)" if near else "")]
    problems = []
    if not tag:
        problems.append(f"name {e.name!r} needs a tag: 'arch.tag'")
    if e.provenance.seeds is not None:
        problems += _seed_problems(e.provenance.seeds, e.metrics)
    if e.task not in TASKS or e.task != get_entry(arch).task:
        problems.append(f"task {e.task!r} is not {arch}'s task {get_entry(arch).task!r}")
    flipped = hflip_metrics(e.metrics)
    if flipped and e.task not in HFLIP_TTA_TASKS:
        problems.append(
            f"metrics {flipped} are measured with test-time flips, which only {', '.join(HFLIP_TTA_TASKS)} "
            f"evaluation does, not {e.task}"
        )
    if Path(e.file).name != e.file or not e.file.endswith(".safetensors"):
        problems.append(f"file {e.file!r} must be a bare '*.safetensors' file name")
    if len(e.sha256) != 64 or set(e.sha256) - set("0123456789abcdef"):
        problems.append(f"sha256 {e.sha256!r} is not 64 lowercase hex digits")
    if e.label_names and len(e.label_names) != e.num_classes:
        problems.append(f"{len(e.label_names)} label_names for {e.num_classes} classes")
    spec = e.input
    if len(spec.input_size) != 2 or len(spec.mean) != spec.in_chans or len(spec.std) != spec.in_chans:
        problems.append("input needs input_size [H, W] and one mean and std per input channel")
    if spec.fit not in FITS:
        problems.append(f"input.fit {spec.fit!r} is not one of {FITS}")
    if spec.fit == "squash" and spec.resize_size is not None:
        problems.append("input.fit 'squash' resizes to input_size: resize_size must be null")
    if spec.interpolation not in INTERPOLATIONS:
        problems.append(f"input.interpolation {spec.interpolation!r} is not one of {INTERPOLATIONS}")
    for key in ("num_classes", "in_chans", "backbone_weights"):
        if key in e.model_args:
            problems.append(f"model_args must not hold {key!r}: it has its own field")
    if e.provenance.backbone_weights is not None:
        problems += _backbone_problems(e.provenance.backbone_weights)
    if bool(e.hf_repo_id) != bool(e.hf_revision):
        problems.append("hf_repo_id and hf_revision are set together (on publishing) or both empty")
    if e.hf_revision and (len(e.hf_revision) != 40 or set(e.hf_revision) - set("0123456789abcdef")):
        problems.append(f"hf_revision {e.hf_revision!r} must be a commit sha (a branch could move)")
    return problems


def _backbone_problems(b: BackboneSource) -> list[str]:
    """A backbone source names a weight (``arch.tag`` or ``hf-hub:ORG/REPO``) and its file's hash."""
    problems = []
    arch, tag = split_name(b.name)
    if not b.name.startswith("hf-hub:") and not (
        tag and is_model(arch) and get_entry(arch).task == "classification"
    ):
        problems.append(
            f"backbone_weights.name {b.name!r} is neither a classifier's 'arch.tag' nor 'hf-hub:ORG/REPO'"
        )
    if len(b.sha256) != 64 or set(b.sha256) - set("0123456789abcdef"):
        problems.append(f"backbone_weights.sha256 {b.sha256!r} is not 64 lowercase hex digits")
    return problems


def _manifest_problems(entries: list[WeightsEntry]) -> list[str]:
    problems, seen, defaults = [], set(), {}
    for e in entries:
        if e.name in seen:
            problems.append(f"{e.name} appears twice")
        seen.add(e.name)
        defaults.setdefault(e.arch, [])
        if e.default:
            defaults[e.arch].append(e.name)
    for arch, names in defaults.items():
        if len(names) != 1:
            problems.append(f"{arch} needs exactly one default weight, has {len(names)}: {names}")
    return problems


def _entry_json(e: WeightsEntry) -> dict[str, Any]:
    """An entry as JSON, leaving out optional fields at their default (entries stay as short as
    what they record)."""
    return _without_defaults(e)


def _without_defaults(obj: Any) -> dict[str, Any]:
    """A dataclass as a dict without its optional fields at their default, nested ones too."""
    defaults = {f.name: f.default for f in dataclasses.fields(obj) if f.default is not dataclasses.MISSING}
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in defaults and value == defaults[f.name]:
            continue
        out[f.name] = _without_defaults(value) if dataclasses.is_dataclass(value) else _plain(value)
    return out


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def save_manifest(entries: list[WeightsEntry], path: str | Path | None = None) -> None:
    """Validate and write the manifest atomically (a reader never sees half a file)."""
    path = Path(path or manifest_path())
    data = [_entry_json(e) for e in sorted(entries, key=lambda e: e.name)]
    parse_manifest(data, source=f"new content for {path}")
    atomic_write(path, (_to_json(data) + "\n").encode("utf-8"))


def _to_json(value: Any, depth: int = 0) -> str:
    """JSON with one field per line, but flat lists (mean, std, label names) on one line."""
    pad, end = "  " * (depth + 1), "  " * depth
    if isinstance(value, dict) and value:
        fields = (f"{pad}{json.dumps(k)}: {_to_json(v, depth + 1)}" for k, v in value.items())
        return "{\n" + ",\n".join(fields) + f"\n{end}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(pad + _to_json(v, depth + 1) for v in value) + f"\n{end}]"
    return json.dumps(value, ensure_ascii=False)

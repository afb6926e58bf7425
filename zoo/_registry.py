"""The one registry of architectures: a plain dict that refuses duplicates.

Names are ``arch`` or ``arch.tag``; the registry holds architectures (``arch``),
the weights manifest holds tags. Each entry knows its task, family and default
input size, so tools can build, benchmark and evaluate any model by name.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

TASKS = ("classification", "segmentation", "detection")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    fn: Callable
    task: str
    family: str
    input_size: tuple[int, int, int]  # (channels, height, width) the model is built for by default


_MODELS: dict[str, ModelEntry] = {}


def register_model(task: str = "classification", input_size: tuple[int, int, int] = (3, 224, 224)):
    """Decorator that registers a model function under its own name.

    The family is the module the function lives in (``zoo.models.resnet`` -> ``resnet``).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")

    def wrap(fn: Callable) -> Callable:
        name = fn.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered (by {_MODELS[name].fn.__module__})")
        family = fn.__module__.rsplit(".", 1)[-1]
        _MODELS[name] = ModelEntry(name, fn, task, family, tuple(input_size))
        return fn

    return wrap


def split_name(name: str) -> tuple[str, str | None]:
    """``'resnet20.fashion_mnist'`` -> ``('resnet20', 'fashion_mnist')``; ``'resnet20'`` -> ``('resnet20', None)``."""
    arch, _, tag = name.partition(".")
    return arch, (tag or None)


def close_matches(name: str, choices, n: int = 5) -> list[str]:
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)


def unknown_name_error(kind: str, name: str, choices) -> KeyError:
    near = close_matches(name, choices)
    hint = f" Did you mean: {', '.join(near)}?" if near else ""
    return KeyError(f"Unknown {kind} {name!r}.{hint} (zoo.list_models() lists all {len(list(choices))}.)")


def get_entry(name: str) -> ModelEntry:
    arch, _ = split_name(name)
    if arch not in _MODELS:
        raise unknown_name_error("model", arch, _MODELS)
    return _MODELS[arch]


def is_model(name: str) -> bool:
    """True when ``name`` (``arch`` or ``arch.tag``) names a registered architecture."""
    return split_name(name)[0] in _MODELS


def list_models(filter: str | list[str] = "", task: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered names, sorted, filtered by fnmatch pattern(s) and task.

    With ``pretrained=True`` the list holds ``arch.tag`` names that have weights in the manifest.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS} or None, got {task!r}")
    if pretrained:
        from .weights import load_manifest

        names = [e.name for e in load_manifest()]
    else:
        names = list(_MODELS)
    if task is not None:
        names = [n for n in names if get_entry(n).task == task]
    patterns = [filter] if isinstance(filter, str) else list(filter)
    patterns = [p for p in patterns if p]
    if patterns:
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]
    return sorted(names)

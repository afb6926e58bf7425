"""The one registry of architectures: a plain dict that refuses duplicates.

Names are ``arch`` or ``arch.tag``; the registry holds architectures (``arch``), the weights
manifest holds tags. Each entry knows its class, task, family and default input size, so
tools can build, benchmark and evaluate any model by name.

A variant is registered by a function that returns the arguments it fixes; the decorator
turns it into the variant's builder, which receives the registered name from it::

    @register_model(ResNet, input_size=(3, 32, 32), defaults=dict(num_classes=10))
    def resnet20():
        return dict(block=BasicBlock, layers=(3, 3, 3), channels=(16, 32, 64), stem="cifar")

``resnet20(**kwargs)`` (and ``create_model("resnet20", **kwargs)``) then builds
``ResNet(**fixed, **defaults_overridden_by_kwargs)``: overriding a fixed argument, or passing
one the class does not take, is an ``UnknownArgumentError`` that names it.

This module imports nothing of zoo: every other layer may use it.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._tasks import TASKS  # plain names, shared with the engine's task registry


class UnknownArgumentError(TypeError):
    """A keyword argument the model does not take (a misspelling, usually)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    fn: Callable  # the builder: fn(**kwargs) -> model
    task: str
    family: str
    input_size: tuple[int, int, int]  # (channels, height, width) the model is built for by default
    cls: type
    fixed: dict[str, Any] = field(default_factory=dict, hash=False)  # what the variant fixes
    defaults: dict[str, Any] = field(default_factory=dict, hash=False)  # what a caller may override

    def arguments(self, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every argument ``cls`` receives when the variant is built with ``kwargs``: the class's
        own defaults, then the variant's defaults, the caller's ``kwargs`` and what it fixes."""
        params = inspect.signature(self.cls.__init__).parameters
        own = {k: p.default for k, p in params.items() if k != "self" and p.default is not p.empty}
        return {**own, **self.defaults, **(kwargs or {}), **self.fixed}


_MODELS: dict[str, ModelEntry] = {}


def register_model(
    cls: type,
    *,
    task: str = "classification",
    input_size: tuple[int, int, int] = (3, 224, 224),
    defaults: dict[str, Any] | None = None,
    family: str | None = None,
):
    """Decorator: register the variant named after the function, built as ``cls``.

    The function returns the arguments the variant fixes; ``defaults`` are arguments the
    caller may override (``num_classes=10`` for the small-image models). The family defaults
    to the module the function lives in (``zoo.models.resnet`` -> ``resnet``).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    defaults = dict(defaults or {})

    def wrap(variant: Callable[[], dict[str, Any]]) -> Callable[..., Any]:
        name = variant.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered (by {_MODELS[name].fn.__module__})")

        @functools.wraps(variant)
        def builder(**kwargs: Any) -> Any:
            return build_model(name, cls, variant(), {**defaults, **kwargs})

        _MODELS[name] = ModelEntry(
            name,
            builder,
            task,
            family or variant.__module__.rsplit(".", 1)[-1],
            tuple(input_size),
            cls,
            variant(),
            defaults,
        )
        return builder

    return wrap


def check_kwargs(arch: str, cls: type, kwargs: dict[str, Any]) -> None:
    """Raise ``UnknownArgumentError`` naming each argument ``cls.__init__`` does not accept."""
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p != "self" and params[p].kind is not inspect.Parameter.VAR_KEYWORD]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        hints = []
        for k in unknown:
            near = difflib.get_close_matches(k, accepted, n=3, cutoff=0.5)
            hints.append(f"{k!r}" + (f" (did you mean {', '.join(map(repr, near))}?)" if near else ""))
        raise UnknownArgumentError(
            f"{arch} got unknown argument(s) {', '.join(hints)}. It accepts: {', '.join(sorted(accepted))}."
        )


def build_model(arch: str, cls: type, model_args: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    """Build ``cls`` from the variant's fixed ``model_args`` and the user's ``kwargs``.

    A user argument that the variant fixes (``layers`` for ``resnet20``) is an error, not a
    silent override; one the class does not take is an error that names it.
    """
    fixed = sorted(set(model_args) & set(kwargs))
    if fixed:
        raise UnknownArgumentError(
            f"{arch} fixes {', '.join(fixed)} (={', '.join(repr(model_args[k]) for k in fixed)}); "
            f"pick another registered variant instead of overriding it"
        )
    check_kwargs(arch, cls, kwargs)
    return cls(**model_args, **kwargs)


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


def check_task(task: str | None) -> None:
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS} or None, got {task!r}")


def filter_names(names, filter: str | list[str] = "", task: str | None = None) -> list[str]:
    """``names`` (``arch`` or ``arch.tag``) of ``task`` that match any fnmatch pattern, sorted."""
    check_task(task)
    names = list(names)
    if task is not None:
        names = [n for n in names if get_entry(n).task == task]
    patterns = [filter] if isinstance(filter, str) else list(filter)
    patterns = [p for p in patterns if p]
    if patterns:
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]
    return sorted(names)


def list_architectures(filter: str | list[str] = "", task: str | None = None) -> list[str]:
    """Registered architectures, sorted, filtered by fnmatch pattern(s) and task."""
    return filter_names(_MODELS, filter, task)

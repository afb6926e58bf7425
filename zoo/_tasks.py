"""The kinds of task, as plain data: the one list that models, datasets and task classes name.

It imports nothing of zoo, so the model registry (below the engine) and the engine's task
registry (above the models and datasets) can both take their names from here: a model
registered for a task, a dataset described as one, a ``Task`` class and a ``TaskUse`` class
all refer to an entry of ``TASKS``. Adding a task kind is one ``TaskKind`` here, one ``Task``
class in ``zoo/engine/tasks.py`` (training and evaluation) and one ``TaskUse`` class in
``zoo/tasks_use/`` (what ``zoo predict``, ``zoo export``, ``zoo explain`` and ``eval.py`` do
with its models); no command names a task.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskKind:
    """What the lowest layers need to know about a kind of task."""

    name: str
    hub_task: str  # the Hugging Face Hub's name for it: pipeline tag and model-index task type
    hflip_tta: bool = False  # measures metrics with test-time horizontal flips (``top1_hflip``)


KINDS = (
    TaskKind("classification", "image-classification", hflip_tta=True),
    TaskKind("segmentation", "image-segmentation"),
    TaskKind("detection", "object-detection"),
)
TASKS = tuple(k.name for k in KINDS)

# Metrics measured with test-time horizontal flips end in this suffix (``top1_hflip``); only
# these tasks measure them (the manifest refuses such a metric for another task).
HFLIP_SUFFIX = "_hflip"
HFLIP_TTA_TASKS = tuple(k.name for k in KINDS if k.hflip_tta)


def unknown_task(name: str, known=TASKS) -> ValueError:
    """The error for a task name that is not one of ``known``; it names them."""
    return ValueError(f"unknown task {name!r}; the known tasks: {', '.join(sorted(known))}")


def task_kind(name: str) -> TaskKind:
    """The ``TaskKind`` called ``name``; an unknown name is a ``ValueError`` naming the known ones."""
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise unknown_task(name)


def hflip_metrics(metrics: dict) -> list[str]:
    """The names among ``metrics`` that were measured with test-time flips."""
    return [name for name in metrics if name.endswith(HFLIP_SUFFIX)]

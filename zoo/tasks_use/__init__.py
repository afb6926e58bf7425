"""The use side of each task: what the commands do with its models, one class per task.

``zoo predict``, ``zoo export``, ``zoo explain`` and ``eval.py`` look a model's task up here
(``get_use(task)``) and call its ``TaskUse``: how an image of any size becomes what the model
sees, the results of one image and how they are printed and drawn, the exported graph and its
outputs and how they are checked against PyTorch, what ``zoo explain`` shows by default,
which of eval.py's pictures apply and how its numbers are printed. The commands name no task:
a new one is a ``TaskUse`` subclass in a module here, decorated with ``@register_use`` and
imported below (with its ``TaskKind`` in ``zoo/_tasks.py`` and its ``Task`` in
``zoo/engine/tasks.py``). An unknown task is a ``ValueError`` that names the known ones.

``ModelCard`` is what running a model needs to know besides its weights, from a published
weight (``from_weights``), a run's own file (``from_run``) or an architecture alone
(``from_model``).

This package sits above the engine and below ``zoo.predict``, ``zoo.export`` and ``zoo.viz``,
so all three can dispatch on it; what ``zoo explain`` shows is named here and drawn in
``zoo.explain``.
"""

from . import classification, detection, segmentation  # noqa: F401  (each registers its task)
from .base import (
    DenseTaskUse,
    ModelCard,
    TaskUse,
    as_rgb,
    get_use,
    list_uses,
    register_use,
    save_png,
    with_legend,
)

__all__ = [
    "DenseTaskUse",
    "ModelCard",
    "TaskUse",
    "as_rgb",
    "get_use",
    "list_uses",
    "register_use",
    "save_png",
    "with_legend",
]

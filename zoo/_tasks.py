"""The kinds of task, as plain names: the one list that models, datasets and task classes name.

It imports nothing, so the model registry (below the engine) and the engine's task registry
(above the models and datasets) can both take their names from here: a model registered for a
task, a dataset described as one, and a ``Task`` class all refer to an entry of ``TASKS``.
Adding a task kind is one name here plus one ``Task`` class in ``zoo/engine/tasks.py``.
"""

TASKS = ("classification", "segmentation", "detection")

# Metrics measured with test-time horizontal flips end in this suffix (``top1_hflip``); only
# these tasks measure them (the manifest refuses such a metric for another task).
HFLIP_SUFFIX = "_hflip"
HFLIP_TTA_TASKS = ("classification",)


def hflip_metrics(metrics: dict) -> list[str]:
    """The names among ``metrics`` that were measured with test-time flips."""
    return [name for name in metrics if name.endswith(HFLIP_SUFFIX)]

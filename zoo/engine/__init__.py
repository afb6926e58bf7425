"""Training and evaluation, shared by every task."""

from .evaluator import evaluate
from .tasks import ClassificationTask, Task, get_task, register_task
from .trainer import NonFiniteLossError, train

__all__ = [
    "ClassificationTask",
    "NonFiniteLossError",
    "Task",
    "evaluate",
    "get_task",
    "register_task",
    "train",
]

"""Training and evaluation, shared by every task."""

from .checkpoint import CheckpointError, load_run, model_from_config
from .evaluator import Evaluation, evaluate, evaluate_published, evaluate_run
from .run_folder import RunFolderError
from .tasks import ClassificationTask, Task, get_task, list_tasks, register_task
from .trainer import NonFiniteLossError, RunInterrupted, train

__all__ = [
    "CheckpointError",
    "ClassificationTask",
    "Evaluation",
    "NonFiniteLossError",
    "RunFolderError",
    "RunInterrupted",
    "Task",
    "evaluate",
    "evaluate_published",
    "evaluate_run",
    "get_task",
    "list_tasks",
    "load_run",
    "model_from_config",
    "register_task",
    "train",
]

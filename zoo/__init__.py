"""zoo: a PyTorch model zoo built around the ideas that make modern CNNs work."""

from . import data, models  # noqa: F401  (models registers every architecture)
from ._builder import create_model, list_models, model_info
from ._registry import UnknownArgumentError, is_model
from ._version import __version__

__all__ = ["UnknownArgumentError", "create_model", "is_model", "list_models", "model_info", "__version__"]

"""zoo: a PyTorch model zoo built around the ideas that make modern CNNs work."""

from . import data, models  # noqa: F401  (models registers every architecture)
from ._builder import create_model, model_info
from ._registry import is_model, list_models

__version__ = "0.1.0"
__all__ = ["create_model", "is_model", "list_models", "model_info", "__version__"]

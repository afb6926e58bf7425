"""Datasets, batch augmentation and loaders."""

from .batch_aug import BatchAugment, normalize
from .classification import DatasetNotFoundError, TensorDataset, load_classification
from .loader import InMemoryLoader

__all__ = [
    "BatchAugment",
    "DatasetNotFoundError",
    "InMemoryLoader",
    "TensorDataset",
    "load_classification",
    "normalize",
]

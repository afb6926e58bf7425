"""Datasets, batch augmentation and loaders.

Every dataset module registers a typed description of itself (``DatasetInfo``) with the
loader of its splits; tasks find datasets through ``dataset_info`` / ``load_dataset``.
"""

from . import bccd, camvid, classification, imagenette  # noqa: F401  (each registers its datasets)
from .batch_aug import BatchAugment, normalize
from .bccd import BCCDDataset
from .camvid import CamVid
from .classification import DatasetNotFoundError, TensorDataset, load_classification
from .detection import DetectionTransform, collate_detection
from .loader import InMemoryLoader, SampleLoader
from .registry import (
    DataFileError,
    DatasetInfo,
    dataset_info,
    list_datasets,
    load_dataset,
    register_dataset,
)

__all__ = [
    "BatchAugment",
    "BCCDDataset",
    "CamVid",
    "DataFileError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DetectionTransform",
    "InMemoryLoader",
    "SampleLoader",
    "TensorDataset",
    "collate_detection",
    "dataset_info",
    "list_datasets",
    "load_classification",
    "load_dataset",
    "normalize",
    "register_dataset",
]

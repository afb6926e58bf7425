"""The benchmark table is true: every published classification weight re-measures to its
recorded numbers (segmentation and detection entries have their own tests)."""

import importlib.util

import pytest

from zoo.data import DatasetNotFoundError
from zoo.engine import get_task
from zoo.weights import load_manifest

from .conftest import REPO

ENTRIES = [e for e in load_manifest() if e.task == "classification"]


def _eval_module():
    spec = importlib.util.spec_from_file_location("zoo_eval_cli", REPO / "eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_published_weights_reproduce_their_metrics(entry):
    try:
        result = _eval_module().eval_published(entry.name, None, 1000)
    except DatasetNotFoundError as err:
        pytest.skip(f"{entry.dataset} ({entry.split}) is not available here: {err}")
    tolerance = get_task(entry.task).tolerance
    for metric, recorded in entry.metrics.items():
        assert abs(result[metric] - recorded) <= tolerance, (metric, result[metric], recorded)

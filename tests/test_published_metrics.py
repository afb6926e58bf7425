"""The benchmark table is true: every published weight re-measures to its recorded numbers,
within its task's tolerance, whenever its dataset is present (CI has them all)."""

import importlib.util
import warnings

import pytest

from zoo.data import DatasetNotFoundError
from zoo.engine import get_task
from zoo.weights import load_manifest

from .conftest import REPO

ENTRIES = load_manifest()


def load_eval_cli():
    """eval.py as a module, so the test measures exactly what the README's command measures."""
    spec = importlib.util.spec_from_file_location("zoo_eval_cli", REPO / "eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_published_weights_reproduce_their_metrics(entry):
    cli = load_eval_cli()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision.io's notice
            result = cli.eval_published(entry.name, None, None)
    except DatasetNotFoundError as err:
        pytest.skip(f"{entry.dataset} ({entry.split}) is not available here: {err}")
    tolerance = get_task(entry.task).tolerance
    for metric, recorded in entry.metrics.items():
        measured = cli.lookup(result, metric)
        assert measured is not None, f"{entry.name}: the evaluator no longer reports {metric!r}"
        assert abs(measured - recorded) <= tolerance, (metric, measured, recorded, tolerance)

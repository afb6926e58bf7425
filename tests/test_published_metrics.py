"""The benchmark table is true: every published weight re-measures to its recorded numbers,
within its task's tolerance, whenever its dataset is present (CI has them all)."""

import warnings

import pytest

from zoo.data import DatasetNotFoundError
from zoo.engine import evaluate_published, get_task
from zoo.engine.evaluator import differences
from zoo.weights import load_manifest

ENTRIES = load_manifest()

# Minutes of evaluation, the same as `python eval.py --all` does; CI runs that instead (.ci/run).
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_published_weights_reproduce_their_metrics(entry):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision.io's notice
            result = evaluate_published(entry.name).result  # what eval.py NAME measures
    except DatasetNotFoundError as err:
        pytest.skip(f"{entry.dataset} ({entry.split}) is not available here: {err}")
    tolerance = get_task(entry.task).tolerance
    for metric, diff in differences(result, entry.metrics).items():
        assert abs(diff) <= tolerance, (metric, diff, entry.metrics[metric], tolerance)

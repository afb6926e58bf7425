import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ZOO_SHARED_DATA", REPO.parent / "shared" / "data"))


def run_env(**extra: str) -> dict[str, str]:
    """Environment for subprocess runs of the CLIs: the repo on the path, quiet progress bars."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1", **extra)
    return env


@pytest.fixture
def python() -> str:
    return sys.executable

import os
import sys
from pathlib import Path

import pytest
import torch

import zoo

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ZOO_SHARED_DATA", REPO.parent / "shared" / "data"))


def run_env(**extra: str) -> dict[str, str]:
    """Environment for subprocess runs of the CLIs: the repo on the path, quiet progress bars."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1", **extra)
    return env


@pytest.fixture
def python() -> str:
    return sys.executable


# What `add_entry` needs besides the file, for manifests the weights and hub tests write.
WEIGHTS_META = dict(
    dataset="cifar10",
    split="test",
    metrics={"top1": 91.25, "top5": 99.5},
    mean=[0.49, 0.48, 0.45],
    std=[0.25, 0.24, 0.26],
    config="configs/resnet20_cifar10.yaml",
    command="python train.py configs/resnet20_cifar10.yaml",
    eval_command="python eval.py resnet20.test",
    label_names=[f"class{i}" for i in range(10)],
    git_commit="0" * 40,
    hardware="1x H100",
    train_wall_time_s=1800.0,
)


def random_state(name: str = "resnet20", seed: int = 0, **kwargs) -> dict[str, torch.Tensor]:
    """A state dict with every parameter random, so equality checks mean something."""
    torch.manual_seed(seed)
    model = zoo.create_model(name, **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model.state_dict()

"""The dataset registry: typed descriptions, and tasks that take any registered dataset of their kind."""

import ast
import dataclasses

import pytest
import torch
from torchvision import tv_tensors

from zoo._tasks import TASKS
from zoo.config import ConfigError, load_config
from zoo.data import DatasetInfo, dataset_info, list_datasets
from zoo.data import registry as registry_module
from zoo.data.detection import DetectionTransform
from zoo.engine import evaluate, get_task, list_tasks

from .conftest import REPO


def test_every_dataset_describes_itself():
    assert set(list_datasets("classification")) >= {"fashion_mnist", "mnist", "cifar10", "cifar100"}
    assert list_datasets("segmentation") == ["camvid"] and list_datasets("detection") == ["bccd"]
    fm = dataset_info("fashion_mnist")
    assert (fm.num_classes, fm.in_chans, fm.input_size, fm.classes[0]) == (10, 1, (28, 28), "T-shirt/top")
    assert dataset_info("cifar100").num_classes == 100 and len(set(dataset_info("cifar100").classes)) == 100
    camvid = dataset_info("camvid")
    assert camvid.ignore_index == 11 and camvid.num_classes == 11 and len(camvid.palette) == 12
    assert dataset_info("bccd").classes == ("RBC", "WBC", "Platelets")
    assert all(dataset_info(n).task in TASKS for n in list_datasets())


def test_a_task_refuses_a_dataset_of_another_kind():
    with pytest.raises(ValueError, match="'bccd' is a detection dataset, not a segmentation one"):
        get_task("segmentation").dataset("bccd")
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        dataset_info("nope")


def test_the_task_registry_and_the_model_registry_share_one_list():
    assert list_tasks() == sorted(TASKS)


def test_tasks_import_no_concrete_dataset_module():
    tree = ast.parse((REPO / "zoo" / "engine" / "tasks.py").read_text())
    zoo_imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
    imported = {n.module for n in zoo_imports} | {
        f"{n.module}.{a.name}" for n in zoo_imports for a in n.names
    }
    assert "data.registry" in imported  # what it does use
    for concrete in ("camvid", "bccd", "classification"):
        assert f"data.{concrete}" not in imported, imported


class ToySegmentation:
    """4 images of 8x8, 3 classes, 255 = ignore; labels are the image's own brightness class."""

    def __init__(self, split, data_dir=None):
        gen = torch.Generator().manual_seed(0)
        self.masks = torch.randint(0, 3, (4, 8, 8), generator=gen, dtype=torch.uint8)
        self.masks[:, :2] = 255
        self.images = (self.masks.clamp(max=2) * 100).expand(3, -1, -1, -1).permute(1, 0, 2, 3).contiguous()

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return tv_tensors.Image(self.images[i]), tv_tensors.Mask(self.masks[i])


TOY = DatasetInfo(
    "toyseg", "segmentation", ("a", "b", "c"), 3, (0.5,) * 3, (0.5,) * 3, ("train", "test"), (8, 8), 255
)


@pytest.fixture
def toyseg(monkeypatch):
    monkeypatch.setattr(registry_module, "_DATASETS", dict(registry_module._DATASETS))
    registry_module.register_dataset(TOY, ToySegmentation)
    return TOY


def test_segmentation_works_with_any_registered_dataset(toyseg):
    """A dataset with another ignore index than CamVid's void: that label counts nowhere."""
    cfg = load_config(
        None,
        [
            "task=segmentation",
            "data.dataset=toyseg",
            "data.batch_size=2",
            "data.eval_batch_size=4",
            "data.crop_size=[8, 8]",
        ],
    )
    task = get_task("segmentation")
    train_loader, eval_loader, info = task.build_loaders(cfg)
    assert info == toyseg
    x, y = next(iter(train_loader.batches(0)))
    assert x.shape == (2, 3, 8, 8) and set(y.unique().tolist()) <= {0, 1, 2, 255}

    class Perfect(torch.nn.Module):
        """Logits that are right everywhere except where the label is 255 (there: garbage)."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            labels = (x[:, 0] * 0.5 + 0.5).mul(255).round().div(100).round().long().clamp(max=2)
            return {"out": torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 50 + self.w}

    result = evaluate(Perfect(), eval_loader, task, info)
    assert result["miou"] == 100.0 and list(result["per_class_iou"]) == ["a", "b", "c"]
    assert task.loss(Perfect(), (x, y), cfg).item() < 1e-6  # the 255 pixels would cost ~50 each


def test_old_info_dicts_become_descriptions():
    old = {"classes": ["x", "y"], "num_classes": 2, "in_chans": 1, "input_size": [28, 28], "mean": [0.5],
           "std": [0.25], "num_samples": 7}  # fmt: skip
    info = DatasetInfo.from_dict(old, name="fashion_mnist", task="classification")
    assert info.classes == ("x", "y") and info.mean == (0.5,) and info.splits == ("train", "test")
    assert DatasetInfo.from_dict(info.to_dict()) == info
    camvid = dataset_info("camvid")
    assert DatasetInfo.from_dict(camvid.to_dict()) == camvid


@pytest.mark.parametrize(
    "task, override, key",
    [
        ("classification", "data.class_weights=[1.0]", "data.class_weights"),
        ("classification", "data.vflip=true", "data.vflip"),
        ("segmentation", "data.random_erasing=0.5", "data.random_erasing"),
        ("detection", "data.crop_padding=2", "data.crop_padding"),
    ],
)
def test_a_data_key_the_task_ignores_is_refused(task, override, key):
    dataset = {"classification": "fashion_mnist", "segmentation": "camvid", "detection": "bccd"}[task]
    cfg = load_config(None, [f"task={task}", f"data.dataset={dataset}", override])
    with pytest.raises(ConfigError, match=f"{key}=.*the {task} task does not read"):
        get_task(task).build_loaders(cfg)


def test_detection_flips_are_named_for_what_they_do():
    def flips(**kwargs):
        t = DetectionTransform((0.5,) * 3, (0.5,) * 3, train=True, **kwargs)
        return [type(s).__name__ for s in t.transform.transforms if "Flip" in type(s).__name__]

    assert flips(hflip=True, vflip=False) == ["RandomHorizontalFlip"]
    assert flips(hflip=True, vflip=True) == ["RandomHorizontalFlip", "RandomVerticalFlip"]
    assert flips(hflip=False, vflip=False) == []
    bccd = load_config(REPO / "configs/bccd/base.yaml").data
    assert bccd.hflip and bccd.vflip  # the published recipe: both, as before the split


def test_the_description_is_typed_and_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        dataset_info("camvid").ignore_index = 0


def test_registration_refuses_an_inconsistent_description():
    toy = DatasetInfo("toy_fit", "classification", ("a", "b"), 1, (0.5,), (0.25,), ("train",))
    with pytest.raises(
        ValueError, match=r"'toy_fit': fit must be one of \('crop', 'squash'\), got 'stretch'"
    ):
        registry_module.register_dataset(dataclasses.replace(toy, fit="stretch"), lambda split, d: None)
    with pytest.raises(ValueError, match="'toy_fit': mean and std need 1 values each"):
        registry_module.register_dataset(dataclasses.replace(toy, mean=(0.5, 0.5)), lambda split, d: None)
    assert "toy_fit" not in list_datasets()

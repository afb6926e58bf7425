"""Per-task behaviour in one place: every task has its use side, an unknown task is an error
that names the known ones, and a new task is one class that the commands run unchanged."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo import export, hub
from zoo._tasks import TASKS, task_kind
from zoo.cli import print_record
from zoo.engine import list_tasks
from zoo.explain import EXPLAINERS, explain_image
from zoo.predict import ModelCard, Preprocess, predict
from zoo.tasks_use import TaskUse, base, get_use, list_uses, register_use
from zoo.weights import find_weights

from .test_eval_script import eval_module, eval_script  # noqa: F401  (the fixtures)

KNOWN = "the known tasks: classification, detection, segmentation"


def test_every_task_has_its_use_side_its_engine_task_and_its_hub_name():
    assert list_uses() == list_tasks() == sorted(TASKS)
    for task in TASKS:
        use = get_use(task)
        assert use.name == task and task_kind(task).hub_task
        assert set(use.eval_pictures) <= {"save_overlays", "save_boxes", "save_sampling"}
        model = zoo.create_model(next(n for n in zoo.list_models(task=task)))
        assert set(use.explanations(model)) <= set(EXPLAINERS)


def test_an_unknown_task_is_an_error_naming_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match=KNOWN):
        get_use("keypoints")
    w = find_weights("resnet20.fashion_mnist")
    card = dataclasses.replace(ModelCard.from_weights(w), task="keypoints")
    with pytest.raises(ValueError, match=KNOWN):
        Preprocess(card)
    model = zoo.create_model(w.name, pretrained=True)
    with pytest.raises(ValueError, match=KNOWN):
        predict(model, card, [])
    with pytest.raises(ValueError, match=KNOWN):
        explain_image(
            model, card, torch.zeros(1, 28, 28, dtype=torch.uint8), torch.zeros(1, 1, 28, 28), tmp_path / "x"
        )
    with pytest.raises(ValueError, match=KNOWN):
        export.exportable(model, "keypoints")
    with pytest.raises(ValueError, match=KNOWN):  # was a KeyError
        hub.model_card(dataclasses.replace(w, task="keypoints"))
    with pytest.raises(ValueError, match=KNOWN):
        task_kind("keypoints")


def test_a_new_task_is_one_class_and_the_commands_run_it(monkeypatch, tmp_path, capsys):
    """Multi-label tagging, say: a ``TaskUse`` registered under its name is all that predict,
    the printed records and export need."""
    monkeypatch.setattr(base, "TASKS", (*TASKS, "tagging"))
    monkeypatch.setattr(base, "_USES", dict(base._USES))

    @register_use
    class TaggingUse(TaskUse):
        name = "tagging"

        def results(self, out, j, card, size, seen, topk):
            probs = out[j].sigmoid()
            return {"tags": [card.label_names[i] for i in (probs > 0.5).nonzero()[:, 0].tolist()]}

        def lines(self, record, threshold):
            return [f"  tags: {', '.join(record['tags']) or '-'}"]

    torch.manual_seed(0)
    model = zoo.create_model("resnet20", in_chans=1).eval()
    card = dataclasses.replace(ModelCard.from_model("resnet20", model), task="tagging")
    png = tmp_path / "item.png"
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(png)
    (record,) = predict(model, card, [png])
    assert isinstance(record["tags"], list) and record["size"] == [28, 28]
    print_record(record, "tagging", 0.5)
    assert capsys.readouterr().out.splitlines()[1].startswith("  tags: ")
    module, outputs = export.exportable(model, "tagging")
    assert outputs == ("logits",) and isinstance(module, type(model))


def test_eval_refuses_pictures_that_do_not_apply_to_the_task(eval_script, capsys):  # noqa: F811
    assert eval_script("resnet20.fashion_mnist", "--save-overlays", "2") == 2
    err = capsys.readouterr().err
    assert "--save-overlays applies to segmentation models, resnet20.fashion_mnist is classification" in err
    assert eval_script("fcn_resnet18.camvid", "--save-sampling") == 2
    err = capsys.readouterr().err
    assert (
        "--save-boxes/--save-sampling apply to detection models, fcn_resnet18.camvid is segmentation" in err
    )

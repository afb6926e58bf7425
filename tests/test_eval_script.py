"""eval.py's own checks: a bad --checkpoint or --out is one clear line naming the file, given
before any evaluation runs (so no result is lost to it)."""

from __future__ import annotations

import importlib.util
import pickle
import sys

import pytest
import torch

from .conftest import REPO


@pytest.fixture
def eval_script(monkeypatch):
    """eval.py as a module whose evaluations fail the test if they are reached."""
    spec = importlib.util.spec_from_file_location("zoo_eval_script", REPO / "eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def never(*args, **kwargs):
        raise AssertionError("an evaluation ran before the arguments were checked")

    monkeypatch.setattr(module, "evaluate_published", never)
    monkeypatch.setattr(module, "evaluate_run", never)

    def run(*argv: str) -> int:
        monkeypatch.setattr(sys, "argv", ["eval.py", *argv])
        try:
            return module.main()
        except SystemExit as exit:  # argparse's errors
            return exit.code

    return run


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("usage:")]
    assert len(lines) == 1, err
    return lines[0]


def test_a_pickle_named_safetensors_is_refused_unread(eval_script, tmp_path, capsys):
    marker = tmp_path / "unpickled"

    class Payload:  # unpickling it would create the marker file
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name, write in (
        ("torch.safetensors", lambda p: torch.save({"model": Payload()}, p)),
        ("pickle.safetensors", lambda p: p.write_bytes(pickle.dumps(Payload()))),
    ):
        path = tmp_path / name
        write(path)
        assert eval_script("resnet20", "--checkpoint", str(path)) == 2
        line = one_line(capsys.readouterr().err)
        assert str(path) in line and "not a valid safetensors file" in line
        assert ("a zip archive, as torch.save writes" if name.startswith("torch") else "a pickle") in line
        assert "refused because loading one can run arbitrary code" in line
    assert not marker.exists()


def test_a_file_that_is_no_checkpoint_is_named(eval_script, tmp_path, capsys):
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    assert eval_script("resnet20", "--checkpoint", str(text)) == 2
    line = one_line(capsys.readouterr().err)
    assert f"{text} is not a checkpoint: train.py writes them with torch.save" in line
    assert "b'root:x:0:0:r'" in line and "IndexError" not in line


def test_an_out_it_cannot_write_fails_before_the_evaluation(eval_script, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert eval_script("resnet20.fashion_mnist", "--out", str(blocker / "results.json")) == 2
    assert f"--out {blocker / 'results.json'}: cannot create its folder" in capsys.readouterr().err
    assert eval_script("resnet20.fashion_mnist", "--out", str(tmp_path)) == 2
    assert f"--out {tmp_path} is a folder: name the JSON file to write" in capsys.readouterr().err


def test_flips_are_refused_where_they_would_mean_nothing(eval_script, capsys):
    assert eval_script("--all", "--hflip-tta") == 2
    assert "--hflip-tta is for one MODEL" in capsys.readouterr().err
    assert eval_script("fcos_resnet18.bccd", "--hflip-tta") == 2
    err = capsys.readouterr().err
    assert "--hflip-tta applies to classification models, fcos_resnet18.bccd is detection" in err

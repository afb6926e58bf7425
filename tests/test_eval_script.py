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
def eval_module():
    spec = importlib.util.spec_from_file_location("zoo_eval_script", REPO / "eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def eval_script(monkeypatch, eval_module):
    """eval.py as a module whose evaluations fail the test if they are reached."""
    module = eval_module

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


def test_input_size_resizes_the_images_and_is_refused_for_dense_tasks(tmp_path):
    """``eval.py NAME --input-size N``: the same weights on the images resized to NxN."""
    import subprocess
    import sys

    from tests.conftest import REPO, run_env

    out = tmp_path / "r.json"
    cmd = [
        sys.executable,
        str(REPO / "eval.py"),
        "resnet20.fashion_mnist",
        "--input-size",
        "32",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, env=run_env(), capture_output=True, text=True, cwd=tmp_path)
    import json

    result = json.loads(out.read_text())
    assert result["input_size"] == [32, 32] and 10 < result["top1"] < 100
    refused = subprocess.run(
        [sys.executable, str(REPO / "eval.py"), "fcn_resnet18.camvid", "--input-size", "64"],
        env=run_env(),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert refused.returncode == 2 and "--input-size applies to classification models" in refused.stderr


def test_the_eval_loader_resizes_only_when_the_size_differs():
    import torch

    from zoo.data import InMemoryLoader, TensorDataset

    data = TensorDataset(
        torch.randint(0, 255, (4, 3, 16, 16), dtype=torch.uint8), torch.arange(4), [], (0.5,) * 3, (0.5,) * 3
    )
    same = next(iter(InMemoryLoader(data, 4, train=False, size=(16, 16)).batches()))[0]
    plain = next(iter(InMemoryLoader(data, 4, train=False).batches()))[0]
    assert torch.equal(same, plain)  # the stored size: untouched, no resampling
    small = next(iter(InMemoryLoader(data, 4, train=False, size=(8, 8)).batches()))[0]
    assert small.shape == (4, 3, 8, 8)


def test_save_sampling_on_a_model_without_a_deformable_head_keeps_the_results(eval_module, capsys):
    # A checkpoint's head is known only once it is loaded, after the evaluation: a note, no crash.
    from types import SimpleNamespace

    ev = SimpleNamespace(result={"name": "fcos_resnet18.mine"}, model=SimpleNamespace(head_conv="plain"))
    assert eval_module.pictures(ev, 0, 0, True) == {}
    assert "fcos_resnet18.mine has no deformable head (head_conv='plain')" in capsys.readouterr().err

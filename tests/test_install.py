"""A non-editable install knows its weights: the manifest ships inside the package.

``pip install --no-deps`` of this checkout into a fresh virtual environment that sees the
system's site-packages (torch and the other dependencies, not reinstalled), then, from another
directory, the installed zoo lists the published weights and loads one from ``ZOO_WEIGHTS_DIR``.
"""

from __future__ import annotations

import json
import subprocess
import venv

import pytest

from .conftest import REPO

CLIENT = """
import json, zoo
model = zoo.create_model("resnet20", pretrained=True)
print(json.dumps({"file": zoo.__file__, "pretrained": zoo.list_models(pretrained=True),
                  "weights": model.pretrained_weights.name, "num_classes": model.num_classes}))
"""


def test_a_non_editable_install_lists_and_loads_its_weights(tmp_path):
    env_dir = tmp_path / "venv"
    try:
        venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot create a virtual environment here: {e}")
    python = env_dir / "bin" / "python"
    pip = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", str(REPO)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": str(env_dir / "bin"), "ZOO_WEIGHTS_DIR": str(REPO / "weights"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [python, "-c", CLIENT], cwd=elsewhere, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["file"].startswith(str(env_dir)), "the installed copy, not the checkout, was imported"
    installed = [w["name"] for w in json.loads((REPO / "zoo" / "weights_manifest.json").read_text())]
    assert out["pretrained"] == sorted(installed) and "resnet20.fashion_mnist" in out["pretrained"]
    assert (out["weights"], out["num_classes"]) == ("resnet20.fashion_mnist", 10)

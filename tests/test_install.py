"""A non-editable install knows its weights: the build copies the top-level manifest into the
package (setup.py), and the installed zoo reads that copy.

``pip install --no-deps`` of this checkout into a fresh virtual environment that sees the
site-packages of the interpreter running the tests (torch and the other dependencies, not
reinstalled), then, from another directory, the installed zoo lists the published weights and
loads one from ``ZOO_WEIGHTS_DIR``.

"The interpreter running the tests" is the system Python in CI and a newcomer's virtual
environment on a laptop (``python -m venv .venv && pip install -e ".[dev]"``). A venv made with
``--system-site-packages`` would see the *base* interpreter's packages in the second case, not
the newcomer's venv, and fail to import torch; so the new venv gets a ``.pth`` file that adds
the running interpreter's own site directories instead, processed as Python processes its own
(``site.addsitedir``). They come after the new venv's site-packages, so the installed copy of zoo
is the one imported.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import venv
from pathlib import Path

import pytest

from .conftest import REPO

CLIENT = """
import json, zoo
model = zoo.create_model("resnet20", pretrained=True)
print(json.dumps({"file": zoo.__file__, "manifest": str(zoo.weights.manifest_path()), "pretrained": zoo.list_models(pretrained=True),
                  "weights": model.pretrained_weights.name, "num_classes": model.num_classes}))
"""


def running_site_dirs() -> list[str]:
    """The site directories of the interpreter running the tests, as its ``site`` found them:
    a venv's own (and the base's, if it was made with ``--system-site-packages``), or the
    system's, and the user's where this interpreter reads it."""
    dirs = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def make_venv(env_dir: Path) -> Path:
    """A venv with its own pip that also sees ``running_site_dirs()``; its python."""
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    lines = [f"import site; site.addsitedir({d!r})\n" for d in running_site_dirs()]
    (Path(purelib) / "_zoo_test_running_site.pth").write_text("".join(lines))
    return python


def test_a_non_editable_install_lists_and_loads_its_weights(tmp_path):
    env_dir = tmp_path / "venv"
    try:
        python = make_venv(env_dir)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot create a virtual environment here: {e}")
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
    assert out["manifest"] == str(Path(out["file"]).parent / "weights_manifest.json")
    installed = [w["name"] for w in json.loads((REPO / "weights_manifest.json").read_text())]
    assert out["pretrained"] == sorted(installed) and "resnet20.fashion_mnist" in out["pretrained"]
    assert (out["weights"], out["num_classes"]) == ("resnet20.fashion_mnist", 10)

import contextlib
import functools
import http.server
import os
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.weights import Provenance, add_entry

REPO = Path(__file__).resolve().parents[1]
# The datasets folder the library reads too (CI sets it); tests that need CamVid or BCCD skip without it.
DATA_DIR = Path(os.environ["ZOO_DATA_DIR"]) if os.environ.get("ZOO_DATA_DIR") else None


@contextlib.contextmanager
def serve_directory(folder: Path):
    """A quiet HTTP server on 127.0.0.1 over ``folder``, for download code; yields its URL."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def run_env(**extra: str) -> dict[str, str]:
    """Environment for subprocess runs of the CLIs: the repo on the path, quiet progress bars."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1", **extra)
    return env


@pytest.fixture
def python() -> str:
    return sys.executable


# What `add_entry` needs besides the file, for manifests the weights and hub tests write.
PROVENANCE = Provenance(
    config="configs/resnet20_cifar10.yaml",
    command="python train.py configs/resnet20_cifar10.yaml",
    eval_command="python eval.py resnet20.test",
    train_wall_time_s=1800.0,
    hardware="1x H100",
    git_commit="0" * 40,
)
WEIGHTS_META = dict(
    dataset="cifar10",
    split="test",
    metrics={"top1": 91.25, "top5": 99.5},
    mean=[0.49, 0.48, 0.45],
    std=[0.25, 0.24, 0.26],
    label_names=[f"class{i}" for i in range(10)],
    provenance=PROVENANCE,
)


def random_state(name: str = "resnet20", seed: int = 0, **kwargs) -> dict[str, torch.Tensor]:
    """A state dict with every parameter random, so equality checks mean something."""
    torch.manual_seed(seed)
    model = zoo.create_model(name, **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model.state_dict()


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """BN affine parameters and running statistics away from 1/0, so every block (a zero-init
    last BN too) matters and eval-mode comparisons between two models mean something."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.2, 0.6, generator=g)
            m.bias.uniform_(-0.2, 0.2, generator=g)
            m.running_mean.uniform_(-0.2, 0.2, generator=g)
            m.running_var.uniform_(1.0, 2.0, generator=g)


@pytest.fixture
def weight_store(tmp_path, monkeypatch):
    """An empty manifest and weights folder of the test's own (``ZOO_MANIFEST`` /
    ``ZOO_WEIGHTS_DIR`` point at them); ``add(name, seed)`` records random weights there."""
    manifest = tmp_path / "weights_manifest.json"
    manifest.write_text("[]\n")
    monkeypatch.setenv("ZOO_MANIFEST", str(manifest))
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path / "weights"))
    trained = tmp_path / "trained.safetensors"

    def add(name: str, seed: int = 0, **changes):
        state = random_state(name.split(".")[0], seed)
        save_file(state, trained)
        return add_entry(name, trained, **{**WEIGHTS_META, **changes}), state

    return SimpleNamespace(
        tmp=tmp_path, manifest=manifest, weights=tmp_path / "weights", trained=trained, add=add
    )


@pytest.fixture
def trust_files(tmp_path_factory, monkeypatch):
    """``trust(dataset, root)``: make zoo's SHA256 list for ``dataset`` the hashes of the files
    now under ``root`` (a test's own tiny fake folder), as if it were the real dataset."""
    import hashlib

    from zoo.data import integrity

    sums_dir = tmp_path_factory.mktemp("sha256")
    monkeypatch.setattr(integrity, "SUMS_DIR", sums_dir)

    def trust(dataset: str, root: Path) -> None:
        lines = [
            f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root).as_posix()}"
            for p in sorted(Path(root).rglob("*"))
            if p.is_file()
        ]
        (sums_dir / f"{dataset}.sha256").write_text("\n".join(lines) + "\n")

    return trust


def jpeg_bytes(colour, mode: str = "RGB", size=(128, 128)) -> bytes:
    """A plain-colour JPEG image, as bytes."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_tiny_imagenette(tmp_path: Path, monkeypatch, files: dict[str, bytes]):
    """``tmp_path/data/imagenette`` holding ``files`` (relative path -> bytes), zoo's SHA256
    list pointed at their hashes, the user cache in ``tmp_path/cache``. Returns (the dataset's
    folder, a function that rewrites the list from the files as they are now)."""
    import hashlib

    from zoo.data import integrity

    root = tmp_path / "data" / "imagenette"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    sums = tmp_path / "sums"
    sums.mkdir()

    def write_list():
        lines = [f"{hashlib.sha256((root / n).read_bytes()).hexdigest()}  {n}" for n in sorted(files)]
        (sums / "imagenette.sha256").write_text("\n".join(lines) + "\n")

    write_list()
    monkeypatch.setattr(integrity, "SUMS_DIR", sums)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    return root, write_list

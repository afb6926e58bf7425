"""Measure training throughput: the zoo trainer against a plain PyTorch loop, in one run.

    python -m zoo.bench train                       # resnet20 on Fashion-MNIST
    python -m zoo.bench train --model resnet56 --steps 150
    python -m zoo.bench deform                      # DCNv2: torchvision's kernel vs grid_sample
    python -m zoo.bench infer deeplabv3_resnet18 fcn_resnet18   # inference img/s: fp32, bf16, onnxruntime
    python -m zoo.bench infer                       # the same for every published weight
    python -m zoo.bench profile                     # where a training step's time goes
    python -m zoo.bench photos --model resnet18 --config configs/imagenette/concept/recipe.yaml
                                                    # photos: the bound, the trainer, an ImageFolder loop

``--device`` (``auto | cpu | cuda | cuda:N``, as ``train.device``; auto: CUDA when available)
is where everything runs: the plain loop, the trainer (passed on as ``train.device``), the probe,
the profile and the inference and DCN timings; the onnxruntime column stays on the CPU.

The torchrun row launches the training script ``--train-script`` (default: the checkout's
``train.py``); relative config paths are read from the current directory.

``train`` first times forward + backward of the model on a real batch under each
precision / memory-format setting (the probe ``train.amp_bf16=auto`` and
``train.channels_last=auto`` use), then trains for ``--steps`` steps under every setting
within ``--slow`` times the fastest; img/s is the median over timed windows of
``--window`` steps after ``--warmup`` steps. The zoo rows run the real trainer
(``zoo.engine.train``: in-memory uint8 data, whole-batch augmentation); the baseline is the
loop most tutorials write: float32 NCHW, a ``DataLoader`` with per-sample torchvision
transforms and ``num_workers=2``. A setting far slower than the fastest (bf16 on a CPU that
only emulates it) gets its probe number and no full run, which would take many minutes.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from . import export
from ._builder import create_model, list_models
from ._io import atomic_write
from ._paths import checkout_root
from ._registry import get_entry, split_name
from .config import load_config
from .data import dataset_info
from .data.classification import cache_dir, load_classification
from .engine import get_task, train
from .engine.autotune import Trial, autocast, candidates, fastest, native_bf16, synchronize, time_settings
from .engine.checkpoint import model_from_config
from .engine.distributed import resolve_device
from .engine.run_folder import read_metrics
from .layers import DeformConv2d
from .weights import WeightsEntry, WeightsError, find_weights

CPU = torch.device("cpu")


def plain_loop(
    model_name: str,
    config: str,
    steps: int,
    warmup: int,
    window: int,
    batch_size: int,
    device: torch.device = CPU,
) -> float:
    """img/s of a textbook loop: per-sample PIL transforms in 2 workers, fp32, NCHW."""
    load_classification("fashion_mnist", "train")  # stages the files where torchvision looks
    load_classification("fashion_mnist", "test")
    transform = T.Compose(
        [
            T.RandomCrop(28, padding=2),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize((0.2860,), (0.3530,)),
        ]
    )
    data = torchvision.datasets.FashionMNIST(cache_dir() / "torchvision", train=True, transform=transform)
    loader = torch.utils.data.DataLoader(
        data, batch_size=batch_size, shuffle=True, num_workers=2, drop_last=True, persistent_workers=True
    )
    cfg = load_config(config)
    model = create_model(model_name, in_chans=1, num_classes=10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=0.9, weight_decay=5e-4)

    def step(x, y):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return median_img_per_s(loader, step, steps, warmup, window, device)


def median_img_per_s(batches, step, steps: int, warmup: int, window: int, device: torch.device) -> float:
    """Run ``step(x, y)`` on ``batches`` (cycled) for ``steps`` steps; the median img/s over
    windows of ``window`` steps after ``warmup`` steps."""
    rates, done, t0, seen = [], 0, None, 0
    while done < steps:
        for x, y in batches:
            step(x, y)
            done, seen = done + 1, seen + len(y)
            if done == warmup:
                synchronize(device)
                t0, seen = time.perf_counter(), 0
            elif done > warmup and (done - warmup) % window == 0:
                synchronize(device)
                now = time.perf_counter()
                rates.append(seen / (now - t0))
                t0, seen = now, 0
            if done >= steps:
                break
    return statistics.median(rates)


def imagefolder_loop(
    cfg,
    steps: int,
    warmup: int,
    window: int,
    bf16: bool,
    cl: bool,
    device: torch.device = CPU,
) -> float:
    """img/s of the loop a user writes for a folder of photos: torchvision ``ImageFolder``
    (decoding each JPEG every time), per-sample ``RandomResizedCrop`` + flip + normalise in a
    ``DataLoader`` with 2 workers, with the trainer's model, optimizer, precision and batch."""
    from .data import imagenette

    info = dataset_info(cfg.data.dataset)
    size = cfg.data.train_size or info.input_size[0]
    transform = T.Compose(
        [
            T.RandomResizedCrop(size, scale=tuple(cfg.data.rrc_scale)),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(info.mean, info.std),
        ]
    )
    folder = imagenette.find_root(cfg.data.data_dir or None) / cfg.data.train_split
    data = torchvision.datasets.ImageFolder(str(folder), transform=transform)
    loader = torch.utils.data.DataLoader(
        data, cfg.data.batch_size, shuffle=True, num_workers=2, drop_last=True, persistent_workers=True
    )
    model = model_from_config(cfg, info).to(device)
    return _timed_loop(model, cfg, loader, steps, warmup, window, bf16, cl, device)


def in_memory_bound(
    cfg, batch, steps: int, warmup: int, window: int, bf16: bool, cl: bool, device=CPU
) -> float:
    """img/s of the model's own forward + backward + optimizer step on one in-memory batch,
    repeated: what no data pipeline can beat (the bound)."""
    model = model_from_config(cfg, dataset_info(cfg.data.dataset)).to(device)
    return _timed_loop(model, cfg, iter(lambda: batch, None), steps, warmup, window, bf16, cl, device)


def _timed_loop(model, cfg, batches, steps, warmup, window, bf16, cl, device) -> float:
    """Median img/s over windows of ``window`` steps after ``warmup``, the trainer's optimizer."""
    from timm.optim import create_optimizer_v2

    if cl:
        model = model.to(memory_format=torch.channels_last)
    o = cfg.optim
    kwargs = {"nesterov": o.nesterov} if o.opt == "sgd" else {}
    opt = create_optimizer_v2(
        model, opt=o.opt, lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum, **kwargs
    )
    model.train()

    def step(x, y):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(bf16, device):
            loss = F.cross_entropy(model(x), y, label_smoothing=cfg.train.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return median_img_per_s(batches, step, steps, warmup, window, device)


def photos_table(args) -> None:
    """The bound, the zoo trainer and the ImageFolder loop, one after the other in one process,
    each with the setting the trainer's probe picks, at the recipe's batch and training size."""
    cpu = cpu_description()
    recipe = recipe_setup(args.model, args.config)
    trials = probe_settings(recipe, device=args.device)
    best = fastest(trials)
    cfg = recipe.cfg
    print(f"cpu: {cpu}")
    print(
        f"threads: {torch.get_num_threads()}  model: {args.model}  batch: {cfg.data.batch_size}  "
        f"train size: {cfg.data.train_size or 'native'}  setting: {best.label}  steps: {args.steps}"
    )
    common = (args.steps, args.warmup, args.window, best.amp_bf16, best.channels_last)
    rows = [
        (
            "bound: forward + backward + step on one in-memory batch",
            in_memory_bound(cfg, recipe.batch, *common, device=args.device),
        ),
        (
            "zoo trainer (uint8 tensors in memory, batch augmentation)",
            zoo_trainer(args.model, args.config, *common, device=args.device),
        ),
        (
            "ImageFolder + DataLoader (2 workers, per-sample transforms)",
            imagefolder_loop(cfg, *common, device=args.device),
        ),
    ]
    bound = rows[0][1]
    print("\n| pipeline | img/s | vs bound |\n|---|---:|---:|")
    for label, ips in rows:
        print(f"| {label} | {ips:.1f} | {ips / bound:.2f}x |")
    if args.json:
        atomic_write(
            args.json,
            json.dumps(
                {
                    "cpu": cpu,
                    "threads": torch.get_num_threads(),
                    "model": args.model,
                    "config": args.config,
                    "setting": best.label,
                    "rows": [{"pipeline": label, "img_per_s": round(ips, 1)} for label, ips in rows],
                },
                indent=2,
            ).encode(),
        )


def zoo_trainer(
    model_name: str,
    config: str,
    steps: int,
    warmup: int,
    window: int,
    bf16: bool,
    cl: bool,
    procs: int = 1,
    train_script: str | Path = "train.py",
    device: torch.device = CPU,
) -> float:
    """img/s of the zoo trainer itself, read back from its metrics log.

    With ``procs`` > 1 it runs under torchrun, one single-threaded process per core: for
    small convolutions, splitting the batch across processes beats splitting each op
    across threads (a thread team synchronises after every one of ~200 small ops a step).
    """
    with tempfile.TemporaryDirectory() as out:
        overrides = [
            f"model.name={model_name}",
            f"train.max_steps={steps}",
            f"train.log_every_steps={window}",
            f"train.amp_bf16={bf16}",
            f"train.channels_last={cl}",
            f"train.out_dir={out}",
            "train.eval_every_epochs=0",
            "train.ckpt_every_steps=0",
            "train.ema=false",
            f"train.device={device}",  # under torchrun, "cuda:N" means each process's own GPU
        ]
        if procs == 1:
            train(load_config(config, overrides))
        else:
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={procs}",
                str(train_script),
                config,
                *overrides,
            ]
            env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        records = read_metrics(Path(out))
    rates = [r["img_per_s"] for r in records if r["kind"] == "train" and r["step"] > warmup]
    return statistics.median(rates)


class Recipe(NamedTuple):
    """What the trainer builds from a recipe, built once for the probe and the profile."""

    cfg: Any
    task: Any
    batch: Any  # the first real training batch
    model: torch.nn.Module  # fresh; the probe and the profile work on copies

    @property
    def images(self) -> int:
        return self.task.batch_size(self.batch)


def recipe_setup(model_name: str, config: str, overrides: list[str] = ()) -> Recipe:
    cfg = load_config(config, [f"model.name={model_name}", *overrides])
    task = get_task(cfg.task)
    loader, _, info = task.build_loaders(cfg)
    return Recipe(
        cfg, task, next(iter(loader.batches(0, 0))), model_from_config(cfg, info, load_backbone=False)
    )


def probe_settings(
    recipe: Recipe, steps: int = 3, give_up: float = math.inf, device: torch.device = CPU
) -> list[Trial]:
    """Forward + backward seconds per step under every setting: the auto probe, by default
    with every setting timed in full (``give_up`` as in :func:`time_settings`), on ``device``."""
    cfg, task, batch, model = recipe
    settings = candidates("auto", "auto")
    model = copy.deepcopy(model).to(device)  # the recipe's model stays where it is
    return time_settings(model, batch, task, cfg, device, settings, steps, give_up)


PROFILE_STEPS = 10


def step_profile(recipe: Recipe, setting: Trial, steps: int = PROFILE_STEPS, device: torch.device = CPU):
    """torch.profiler's averages over ``steps`` training steps (forward, backward, SGD) of a
    copy of the recipe's model on its first batch, under ``setting``, on ``device``."""
    cfg, task, batch, model = recipe
    model = copy.deepcopy(model).to(device)
    if setting.channels_last:
        model = model.to(memory_format=torch.channels_last)
    batch = task.to_device(batch, device, setting.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        with autocast(setting.amp_bf16, device):
            loss = task.loss(model, batch, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    return prof.key_averages()


# The kernels of a convolution's forward and backward passes: oneDNN's, and aten's own for
# the shapes and builds oneDNN does not take. Self times, so none is counted twice.
CONV_OPS = (
    "aten::mkldnn_convolution",
    "aten::convolution_backward",
    "aten::_slow_conv2d_forward",
    "aten::_slow_conv2d_backward",
    "aten::slow_conv_dilated2d",
    "aten::_nnpack_spatial_convolution",
    "aten::_conv_depthwise2d",
    "aten::cudnn_convolution",  # on CUDA (whose backward is aten::convolution_backward's own)
)


def self_us(event, device: torch.device) -> float:
    """An op's own time in microseconds where the work runs: the CPU's, or on CUDA the time of
    the kernels it launched (the kernels' own rows count 0, so no time counts twice)."""
    if device.type != "cuda":
        return event.self_cpu_time_total
    return event.self_device_time_total if event.device_type == DeviceType.CPU else 0


def conv_ms(averages, steps: int, device: torch.device = CPU) -> float:
    """Milliseconds per step spent inside the convolution kernels themselves."""
    return sum(self_us(e, device) for e in averages if e.key in CONV_OPS) / steps / 1e3


def profile_table(model_name: str, config: str, steps: int, device: torch.device = CPU) -> None:
    recipe = recipe_setup(model_name, config)
    best = fastest(probe_settings(recipe, give_up=3.0, device=device))  # only the winner matters, as for auto
    averages, images = step_profile(recipe, best, steps, device), recipe.images
    total = sum(self_us(e, device) for e in averages) / steps / 1e3  # ms per step
    conv = conv_ms(averages, steps, device)
    print(
        f"cpu: {cpu_description()}\nmodel: {model_name}  batch: {images}  setting: {best.label}  steps: {steps}"
    )
    print("\n| op | ms per step | share |\n|---|---:|---:|")
    for e in sorted(averages, key=lambda e: -self_us(e, device))[:12]:
        ms = self_us(e, device) / steps / 1e3
        print(f"| {e.key} | {ms:.1f} | {ms / total:.0%} |")
    print(
        f"\nconvolutions (forward + backward kernels): {conv:.0f} of {total:.0f} ms per step; with everything "
        f"else free a step could run at most {images / conv * 1e3:.0f} img/s (now {images / total * 1e3:.0f})"
    )


def cpu_description() -> str:
    """Model name, family/model numbers (which tell e.g. Zen 3 from Zen 4) and the vector
    extensions that decide bf16 speed."""
    fields, flags = {}, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model") and key not in fields:
                fields[key] = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        return f"{os.cpu_count()} CPUs"
    vector = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return (
        f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, model "
        f"{fields.get('model', '?')}), {os.cpu_count()} CPUs, {' '.join(vector) or 'no AVX2'}; "
        f"native bf16 (AVX-512 BF16 or AMX): {'yes' if native_bf16() else 'no'}"
    )


def deform_layer(
    shape: tuple[int, int, int, int], repeats: int, device: torch.device = CPU
) -> list[tuple[str, float]]:
    """Seconds for forward + backward of one 3x3 DCNv2 layer (C -> C) on an (N, C, H, W) map,
    median of ``repeats``, for each implementation; a plain 3x3 conv for scale."""
    torch.manual_seed(0)
    x = torch.randn(shape).to(device)
    layers = {impl: DeformConv2d(shape[1], shape[1], 3, impl=impl) for impl in ("torchvision", "grid_sample")}
    # Offsets of about a pixel and masks around 1, as after training; both layers the same.
    torch.nn.init.normal_(layers["torchvision"].offset_mask.weight, std=0.03)
    layers["grid_sample"].load_state_dict(layers["torchvision"].state_dict())
    layers["plain 3x3 conv (reference)"] = torch.nn.Conv2d(shape[1], shape[1], 3, padding=1)
    rows = []
    for name, layer in layers.items():
        layer.to(device)
        times = []
        for _ in range(repeats + 1):  # the first call warms up
            inp = x.clone().requires_grad_()
            synchronize(device)
            start = time.perf_counter()
            layer(inp).square().mean().backward()
            synchronize(device)
            times.append(time.perf_counter() - start)
        rows.append((name, statistics.median(times[1:])))
    return rows


def published(name: str) -> WeightsEntry | None:
    """The manifest entry for ``name``, or None when it has no published weights."""
    try:
        return find_weights(name)
    except WeightsError:
        return None


def input_shape(name: str) -> tuple[int, int, int]:
    """(C, H, W): the published weights' input when the manifest has them, else the registry's."""
    w = published(name)
    return (w.input.in_chans, *w.input.input_size) if w else get_entry(split_name(name)[0]).input_size


def inference(
    name: str, batch: int, bf16: bool, channels_last: bool, repeats: int, device: torch.device = CPU
) -> float:
    """Images/s of ``model(images)`` in eval mode at :func:`input_shape` (median of ``repeats``
    batches after one warm-up batch). The published weights are loaded when the manifest has
    them: a detector's post-processing cost depends on what it detects."""
    model = create_model(name, pretrained=published(name) is not None)
    model.eval().to(device)
    torch.manual_seed(0)
    x = torch.rand(batch, *input_shape(name)).to(device)
    if channels_last:
        model, x = (
            model.to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
        )
    times = []
    with torch.inference_mode(), autocast(bf16, device):
        for _ in range(repeats + 1):
            synchronize(device)
            start = time.perf_counter()
            model(x)
            synchronize(device)
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times[1:])


def onnx_inference(name: str, batches: tuple[int, ...], repeats: int) -> list[float | None]:
    """Images/s of the ONNX export (``zoo.export``) in onnxruntime on the CPU with torch's thread
    count, per batch size, timed as :func:`inference`; None when it cannot export or run."""
    model = create_model(name, pretrained=published(name) is not None)
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            export.export_onnx(model, get_entry(name).task, torch.rand(2, *input_shape(name)), path)
            session = export.onnx_session(path, threads=torch.get_num_threads())
            speeds = []
            for batch in batches:
                torch.manual_seed(0)
                x = torch.rand(batch, *input_shape(name))
                times = []
                for _ in range(repeats + 1):
                    start = time.perf_counter()
                    export.run_onnxruntime(path, x, session)
                    times.append(time.perf_counter() - start)
                speeds.append(batch / statistics.median(times[1:]))
            return speeds
    except (ImportError, export.ExportError, RuntimeError) as err:
        print(f"{name}: no onnxruntime row ({type(err).__name__}: {err})", file=sys.stderr)
        return [None] * len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["train", "deform", "infer", "profile", "photos"])
    parser.add_argument("models", nargs="*", help="infer: arch or arch.tag names")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--config", default="configs/fashion_mnist/resnet20.yaml")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--json", help="also write the table here")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available) | cpu | cuda | cuda:N")
    root = checkout_root()
    parser.add_argument(
        "--train-script",
        type=Path,
        default=root / "train.py" if root else Path("train.py"),
        help="train: the script the torchrun row launches (default: the checkout's train.py)",
    )
    parser.add_argument(
        "--slow",
        type=float,
        default=3.0,
        help="train: skip the full run of settings this much slower in the probe",
    )
    parser.add_argument(
        "--shape", type=int, nargs=4, default=[8, 128, 48, 64], help="deform: N C H W (FCOS's P3 at 384x512)"
    )
    args = parser.parse_args()
    try:
        args.device = resolve_device(args.device)
    except ValueError as err:
        parser.error(f"--device: {err}")
    print(f"device: {args.device}")
    if args.what == "profile":
        profile_table(args.model, args.config, steps=PROFILE_STEPS, device=args.device)
        return
    if args.what == "photos":
        photos_table(args)
        return
    if args.what == "deform":
        print(
            f"threads: {torch.get_num_threads()}  input: {tuple(args.shape)}  forward + backward, median of 5"
        )
        rows = deform_layer(tuple(args.shape), repeats=5, device=args.device)
        print("\n| DCNv2 layer 3x3 | seconds | vs torchvision |\n|---|---:|---:|")
        for name, sec in rows:
            print(f"| {name} | {sec:.3f} | {rows[0][1] / sec:.1f}x |")
        return
    if args.what == "infer":  # no names: every published weight
        print(f"threads: {torch.get_num_threads()}  eval mode, median of 5 batches after 1 warm-up")
        print(
            "\n| model | input | batch | fp32 NCHW img/s | bf16 channels_last img/s | onnxruntime fp32 img/s |"
            "\n|---|---|---:|---:|---:|---:|"
        )
        for name in args.models or list_models(pretrained=True):
            size = "x".join(map(str, input_shape(name)[1:]))
            onnx = onnx_inference(name, (1, 8), repeats=5)
            for batch, ort_speed in zip((1, 8), onnx):
                fp32 = inference(name, batch, False, False, repeats=5, device=args.device)
                bf16 = inference(name, batch, True, True, repeats=5, device=args.device)
                ort_cell = "-" if ort_speed is None else f"{ort_speed:.1f}"
                print(f"| {name} | {size} | {batch} | {fp32:.1f} | {bf16:.1f} | {ort_cell} |", flush=True)
        return
    train_table(args)


def train_table(args) -> None:
    batch = load_config(args.config).data.batch_size
    cpu = cpu_description()
    print(f"cpu: {cpu}")
    print(f"threads: {torch.get_num_threads()}  model: {args.model}  batch: {batch}  steps: {args.steps}")
    recipe = recipe_setup(args.model, args.config)
    trials, probe_batch = probe_settings(recipe, device=args.device), recipe.images
    best = fastest(trials)
    print("\n| setting | forward + backward img/s (probe) | vs fastest |\n|---|---:|---:|")
    for t in trials:
        print(f"| {t.label} | {probe_batch / t.seconds:.0f} | {best.seconds / t.seconds:.2f}x |")
    rows = [
        (
            "plain PyTorch loop (fp32, NCHW, DataLoader + per-sample transforms, 2 workers)",
            plain_loop(args.model, args.config, args.steps, args.warmup, args.window, batch, args.device),
        )
    ]
    for t in trials:
        label = f"zoo trainer ({t.label})"
        if t.seconds > args.slow * best.seconds:
            rows.append((f"{label}: not run, the probe was {t.seconds / best.seconds:.1f}x slower", math.nan))
            continue
        ips = zoo_trainer(
            args.model,
            args.config,
            args.steps,
            args.warmup,
            args.window,
            t.amp_bf16,
            t.channels_last,
            device=args.device,
        )
        rows.append((label, ips))
    label = f"zoo trainer, torchrun 2 processes x 1 thread ({best.label})"
    ips = zoo_trainer(
        args.model,
        args.config,
        args.steps,
        args.warmup,
        args.window,
        best.amp_bf16,
        best.channels_last,
        procs=2,
        train_script=args.train_script,
        device=args.device,
    )
    rows.append((label, ips))
    # The same run's ceiling: the convolutions alone, as if everything else in a step were free.
    averages = step_profile(recipe, best, device=args.device)
    ceiling = recipe.images / conv_ms(averages, PROFILE_STEPS, args.device) * 1e3
    rows.append((f"ceiling: the convolutions alone ({best.label}, torch.profiler)", ceiling))
    base = rows[0][1]
    print("\n| setting | img/s | vs plain |\n|---|---:|---:|")
    for label, ips in rows:
        print(f"| {label} | - | - |" if math.isnan(ips) else f"| {label} | {ips:.0f} | {ips / base:.2f}x |")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "cpu": cpu,
                    "probe": [
                        dict(setting=t.label, img_per_s=round(probe_batch / t.seconds, 1)) for t in trials
                    ],
                    "train": [
                        {"setting": s, "img_per_s": None if math.isnan(v) else round(v, 1)} for s, v in rows
                    ],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()

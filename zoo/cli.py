"""The ``zoo`` command: list, inspect, run, explain and export the zoo's models.

The subcommands are thin: the work is in ``zoo.predict``, ``zoo.explain`` and ``zoo.export``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torchvision.transforms.v2 import functional as TF

from . import export
from ._builder import create_model, list_models, model_info
from ._registry import TASKS, get_entry, split_name
from .engine import CheckpointError, load_run
from .explain import explain_files
from .predict import ModelCard, eval_transforms_for, json_record, output_stems, predict, read_image
from .tasks_use import get_use
from .weights import WeightsError, find_weights, load_manifest

EXAMPLES = """\
examples:
  zoo list                                    every architecture
  zoo list '*resnet*' --pretrained            weights whose name matches, as NAME.TAG
  zoo list --task detection
  zoo info resnet20.fashion_mnist             parameters, MACs, input, metrics, how to reproduce
  zoo predict resnet20.fashion_mnist shoe.png --topk 3
  zoo predict deeplabv3_resnet18.camvid street.jpg --out runs/predict      mask + overlay PNGs
  zoo predict fcos_dcn_resnet18.bccd blood.jpg --threshold 0.5 --json
  zoo explain resnet20.fashion_mnist shoe.png --out runs/explain           Grad-CAM
  zoo explain fcos_dcn_resnet18.bccd blood.jpg --out runs/explain          deformable sampling points
  zoo export fcos_dcn_resnet18.bccd --format onnx --out fcos_dcn.onnx --image blood.jpg

NAME is an architecture (`zoo list`) or NAME.TAG a published weight (`zoo list --pretrained`);
NAME alone means its default weight. NAME --checkpoint FILE.safetensors runs your own weights
(a run's model.safetensors brings its classes and normalisation); NAME.TAG --checkpoint FILE
checks FILE against that published weight.
Each subcommand has its own --help.
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (WeightsError, CheckpointError, KeyError, ValueError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"zoo {args.command}: error: {message}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo",
        description="Use the zoo's models from the command line.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str, example: str, run) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(run=run)
        return p

    p = command(
        "list", "list architectures or published weights", "zoo list '*resnet2*' --pretrained", cmd_list
    )
    p.add_argument("filter", nargs="?", default="", help="fnmatch pattern, e.g. '*resnet*'")
    p.add_argument("--pretrained", action="store_true", help="published weights (NAME.TAG) only")
    p.add_argument("--task", choices=TASKS)

    p = command(
        "info", "describe an architecture or a published weight", "zoo info resnet20.fashion_mnist", cmd_info
    )
    p.add_argument("name", metavar="NAME[.TAG]")
    p.add_argument("--json", action="store_true", help="print one JSON document")

    p = command(
        "predict",
        "run a model on image files (PNG, JPEG; any size, grey or colour)",
        "zoo predict fcos_dcn_resnet18.bccd a.jpg b.jpg --out runs/predict --json",
        cmd_predict,
    )
    add_model_arguments(p)
    add_image_arguments(p, out="runs/predict")
    p.add_argument("--topk", type=int, default=5, help="classification: classes shown per image (default 5)")
    p.add_argument(
        "--threshold", type=float, default=0.5, help="detection: score of the boxes shown (default 0.5)"
    )
    p.add_argument("--batch-size", type=int, default=16)

    p = command(
        "explain",
        "pictures of what a model looks at: Grad-CAM, CBAM/SE attention, ViT attention rollout, "
        "deformable sampling points",
        "zoo explain resnet20.fashion_mnist shoe.png --out runs/explain",
        cmd_explain,
    )
    add_model_arguments(p)
    add_image_arguments(p, out="runs/explain")

    p = command(
        "export",
        "export to ONNX and check the file against PyTorch in onnxruntime",
        "zoo export resnet20.fashion_mnist --format onnx --out resnet20.onnx",
        cmd_export,
    )
    add_model_arguments(p)
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--out", required=True, metavar="FILE.onnx")
    p.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="image size of the graph (default: the weights')",
    )
    p.add_argument(
        "--image",
        action="append",
        default=[],
        help="check on this image (repeatable; default: two random images)",
    )
    p.add_argument(
        "--tolerance", type=float, default=None, help="largest |ONNX - PyTorch| accepted (default 1e-3)"
    )
    return parser


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME[.TAG]")
    p.add_argument(
        "--checkpoint",
        metavar="FILE.safetensors",
        help="your own weights (safetensors only; a run's model.safetensors carries its classes and "
        "normalisation); with NAME.TAG, a copy of that published file, checked against it",
    )
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")


def add_image_arguments(p: argparse.ArgumentParser, out: str) -> None:
    """The image files, the folder for the PNGs and --json: what predict and explain share."""
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--out", default=out, help=f"folder for the PNGs (default {out})")
    p.add_argument("--json", action="store_true", help="print one JSON document, a record per image")


# -- list and info --------------------------------------------------------------------------------


def cmd_list(args) -> int:
    names = list_models(args.filter, task=args.task, pretrained=args.pretrained)
    if not names:
        print(f"no {'weights' if args.pretrained else 'architectures'} match", file=sys.stderr)
        return 1
    for name in names:
        print(name)
    return 0


def cmd_info(args) -> int:
    arch, tag = split_name(args.name)
    entry = get_entry(arch)
    weights = None
    if tag or any(w.arch == arch and w.default for w in load_manifest()):
        weights = find_weights(args.name)
    info = model_info(weights.name if weights else arch)  # arch.tag: the model the weights load into
    input_size = info["input_size"]
    doc = {
        "name": weights.name if weights else arch,
        "architecture": arch,
        "task": entry.task,
        "family": entry.family,
        "params": info["params"],
        "macs": info["macs"],
        "input": list(input_size),
    }
    if weights:
        spec = weights.input
        doc.update(
            input_spec={"mean": spec.mean, "std": spec.std, "resize_size": spec.resize_size},
            dataset=f"{weights.dataset} ({weights.split})",
            metrics=weights.metrics,
            classes=weights.label_names,
            reproduce=weights.provenance.command,
            evaluate=weights.provenance.eval_command,
            config=weights.provenance.config,
            file=f"{weights.file} ({weights.size_bytes / 1e6:.1f} MB, {weights.dtype}, sha256 {weights.sha256[:12]}...)",
        )
        if weights.provenance.seeds is not None:
            doc["seeds"] = dataclasses.asdict(weights.provenance.seeds)
        if weights.provenance.backbone_weights is not None:
            doc["backbone_weights"] = dataclasses.asdict(weights.provenance.backbone_weights)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{doc['name']}: {entry.task}, {entry.family} family")
    print(f"  parameters  {doc['params'] / 1e6:.2f}M")
    print(f"  MACs        {doc['macs'] / 1e6:.1f}M at {'x'.join(map(str, input_size))}")
    if not weights:
        print(f"  no published weights (zoo list --pretrained '{arch}*'); builds with random init")
        return 0
    print(
        f"  input       {doc['input'][0]} channels, {doc['input'][1]}x{doc['input'][2]}, mean {spec.mean}, std {spec.std}"
    )
    print(f"  dataset     {doc['dataset']}")
    print("  metrics     " + ", ".join(f"{k} {v}" for k, v in weights.metrics.items() if "/" not in k))
    if weights.provenance.seeds is not None:
        s = weights.provenance.seeds
        spread = f" ± {s.std}" if s.std is not None else ""
        each = ", ".join(f"seed {k}: {v}" for k, v in s.values.items())
        print(
            f"  seeds       {s.metric} {s.mean}{spread} over {len(s.values)} ({each}); this file is one of them"
        )
    if weights.provenance.backbone_weights is not None:
        b = weights.provenance.backbone_weights
        print(f"  backbone    started from {b.name} (sha256 {b.sha256[:12]}...)")
    print(f"  classes     {', '.join(weights.label_names)}")
    print(f"  reproduce   {weights.provenance.command}")
    print(f"  evaluate    {weights.provenance.eval_command}")
    print(f"  file        {doc['file']}")
    return 0


# -- loading a model for predict / explain / export -----------------------------------------------


def load_model(name: str, checkpoint: str | None, device: str, need_weights: bool = True):
    """The model and its ``ModelCard``.

    ``NAME.TAG`` (or ``NAME`` with a default weight): the verified published weights;
    ``NAME.TAG --checkpoint FILE``: FILE, checked against that entry. ``NAME --checkpoint
    FILE``: the user's own file, loaded as such (see ``load_own``). ``NAME`` without weights:
    random init (only where ``need_weights`` is False).
    """
    arch, tag = split_name(name)
    if checkpoint and not tag:
        model, card = load_own(arch, checkpoint)
    elif tag or any(w.arch == arch and w.default for w in load_manifest()):
        try:
            model = create_model(name, pretrained=True, checkpoint_path=checkpoint)
        except WeightsError as err:
            if not checkpoint:
                raise
            raise WeightsError(
                f"{err} (with {name}, --checkpoint must be that published file; to run your own "
                f"weights, name the architecture alone: {arch} --checkpoint {checkpoint})"
            ) from None
        card = ModelCard.from_weights(model.pretrained_weights)
    elif need_weights:
        raise WeightsError(
            f"{arch} has no published weights: give NAME.TAG (zoo list --pretrained) or --checkpoint"
        )
    else:
        model = create_model(arch)
        card = ModelCard.from_model(arch, model)
        print(f"note: {arch} has no published weights; using a randomly initialised model", file=sys.stderr)
    return model.to(torch.device(device)).eval(), card


def load_own(arch: str, path: str):
    """``arch`` with the weights in the user's safetensors file ``path``, and its card.

    - A published weight's file (same bytes as a manifest entry of ``arch``): that weight.
    - A run's ``model.safetensors`` (train.py writes its config and dataset description into
      the metadata): the model the run's config builds, with the run's classes, normalisation
      and input size.
    - Any other safetensors state dict of ``arch``: classes and input channels read off the
      tensors, mean/std 0.5 assumed (said on stderr).
    """
    get_entry(arch)  # an unknown architecture is named before the file is read
    file = Path(path)
    if not file.is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    data = file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    published = [w for w in load_manifest() if w.arch == arch and w.sha256 == digest]
    if published:
        model = create_model(published[0].name, pretrained=True, checkpoint_path=path)
        return model, ModelCard.from_weights(model.pretrained_weights)
    if file.suffix == ".safetensors" and has_run_metadata(file):
        run = load_run(file)
        if run.cfg.model.name != arch:
            raise ValueError(f"{path} holds a {run.cfg.model.name}, not a {arch}")
        return run.model, ModelCard.from_run(arch, run)
    model = create_model(arch, checkpoint_path=path)
    print(
        f"note: {path} carries no dataset description (it was not written by train.py); "
        "mean/std 0.5 are assumed and classes are named by index",
        file=sys.stderr,
    )
    return model, ModelCard.from_model(arch, model)


def has_run_metadata(path: Path) -> bool:
    """Whether a safetensors file carries what train.py writes: the run's config and dataset."""
    try:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError):  # not safetensors: the loader says what it is instead
        return False
    return {"config", "info"} <= meta.keys()


# -- predict --------------------------------------------------------------------------------------


def cmd_predict(args) -> int:
    model, card = load_model(args.name, args.checkpoint, args.device)
    use = get_use(card.task)
    records = predict(model, card, args.images, topk=args.topk, batch_size=args.batch_size)
    stems = output_stems(args.images, Path(args.out))
    for record, stem in zip(records, stems):
        if "error" not in record:
            record.update(use.save(record, card, stem, args.threshold))
    failed = [r for r in records if "error" in r]
    if args.json:
        print(
            json.dumps(
                {"model": card.name, "task": card.task, "images": [json_record(r) for r in records]}, indent=2
            )
        )
    else:
        for record in records:
            print_record(record, card.task, args.threshold)
    for r in failed:
        print(f"zoo predict: error: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


def print_record(record: dict, task: str, threshold: float) -> None:
    if "error" in record:
        print(f"{record['path']}: FAILED ({record['error']})")
        return
    h, w = record["size"]
    print(f"{record['path']} ({w}x{h}):")
    for line in get_use(task).lines(record, threshold):
        print(line)
    for kind, path in record.get("pictures", {}).items():
        print(f"  {kind}: {path}")


# -- explain --------------------------------------------------------------------------------------


def cmd_explain(args) -> int:
    model, card = load_model(args.name, args.checkpoint, args.device)
    records = explain_files(model, card, args.images, Path(args.out))
    if args.json:
        print(json.dumps({"model": card.name, "task": card.task, "images": records}, indent=2))
    else:
        for r in records:
            if "error" in r:
                print(f"{r['path']}: FAILED ({r['error']})")
                continue
            print(f"{r['path']}:")
            for kind, path in r["pictures"].items():
                print(f"  {kind}: {path}")
    failed = [r for r in records if "error" in r]
    for r in failed:
        print(f"zoo explain: error: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


# -- export ---------------------------------------------------------------------------------------


def cmd_export(args) -> int:
    model, card = load_model(args.name, args.checkpoint, "cpu", need_weights=False)
    height, width = args.input_size or card.input.input_size
    if args.image:
        normalise = eval_transforms_for(card)
        images = [
            TF.resize(read_image(p, card.input.in_chans), [height, width], antialias=True) for p in args.image
        ]
        check = torch.stack([normalise(i) for i in images])
        source = ", ".join(args.image)
    else:
        check = torch.rand(2, card.input.in_chans, height, width, generator=torch.Generator().manual_seed(0))
        check = eval_transforms_for(card)(check)
        source = "2 random images (pass --image to check on a real picture)"
    example = check if len(check) >= 2 else check.repeat(2, 1, 1, 1)
    use = get_use(card.task)
    print(f"exporting {card.name} ({card.task}) at {height}x{width}, dynamic batch, opset {export.OPSET} ...")
    outputs = export.export_onnx(model, card.task, example, args.out)
    tolerance = export.TOLERANCE if args.tolerance is None else args.tolerance
    report = export.check_onnx(model, card.task, args.out, check, tolerance)
    print(
        f"wrote {args.out}: input 'images' (N, {card.input.in_chans}, {height}, {width}); outputs {', '.join(outputs)}"
    )
    if use.export_note:
        print(use.export_note)
    print(
        f"onnxruntime vs PyTorch on {source}: max |difference| {report.max_abs_diff:.3g} (tolerance {tolerance:g})"
    )
    if report.detail:
        print(f"  {report.detail}")
    if not report.ok:
        print(
            f"zoo export: error: {args.out} differs from PyTorch by more than {tolerance:g}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

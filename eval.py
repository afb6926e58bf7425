#!/usr/bin/env python
"""Evaluate models and reproduce the benchmark table.

    python eval.py --all                                # every published weight vs its recorded numbers
    python eval.py resnet20.fashion_mnist               # one published weight (arch alone: its default tag)
    python eval.py resnet20 --checkpoint runs/fashion_mnist/resnet20/model.safetensors
    python eval.py resnet20 --checkpoint runs/fashion_mnist/resnet20/last.ckpt
    python eval.py deeplabv3_resnet18 --checkpoint runs/camvid/deeplabv3_resnet18/last.ckpt --save-overlays 6
    python eval.py fcos_dcn_resnet18 --checkpoint runs/bccd/fcos_dcn_resnet18/last.ckpt --save-boxes 8 --save-sampling

Metrics come from torchmetrics. A table is printed and the full results (per-class numbers,
confusion matrix, ...) are written as JSON to --out. With --all, any metric further from the
manifest than the task's tolerance is flagged and the exit status is 1; a weight whose dataset
is absent is reported with how to get it, without failing the others.
"""

import argparse
import json
import sys
from pathlib import Path

from safetensors import safe_open

from zoo import create_model
from zoo.config import from_dict
from zoo.data import DatasetNotFoundError
from zoo.engine import evaluate, get_task
from zoo.engine.checkpoint import load_checkpoint, write_json
from zoo.engine.trainer import build_model
from zoo.viz import save_detection_boxes, save_sampling_points, save_segmentation_overlays
from zoo.weights import find_weights, load_manifest


def overlays(model, loader, task, info: dict, n: int, name: str) -> dict:
    """With ``--save-overlays N``: a PNG of N images / ground truth / prediction (segmentation)."""
    if n <= 0:
        return {}
    if task.name != "segmentation":
        sys.exit(f"error: --save-overlays applies to segmentation models, {name} is {task.name}")
    return {
        "overlays": str(save_segmentation_overlays(model, loader, info, n, f"runs/eval/{name}_overlays.png"))
    }


def detection_pictures(model, loader, task, info: dict, boxes: int, sampling: bool, name: str) -> dict:
    """With ``--save-boxes N`` / ``--save-sampling``: boxes on N test images; the deformable head's taps."""
    if not boxes and not sampling:
        return {}
    if task.name != "detection":
        sys.exit(f"error: --save-boxes/--save-sampling apply to detection models, {name} is {task.name}")
    out = {}
    if boxes:
        out["boxes"] = str(save_detection_boxes(model, loader, info, boxes, f"runs/eval/{name}_boxes.png"))
    if sampling:  # on the first image, at the centre of the most confident detection
        image = next(iter(loader.batches(0)))[0][0]
        out["sampling"] = str(save_sampling_points(model, image, info, f"runs/eval/{name}_sampling.png"))
    return {"pictures": out}


def eval_published(
    name: str,
    data_dir: str | None,
    batch_size: int | None,
    save_overlays: int = 0,
    boxes: int = 0,
    sampling=False,
) -> dict:
    """Evaluate manifest weights on the split they were measured on, with their own preprocessing."""
    w = find_weights(name)
    task = get_task(w.task)
    batch_size = batch_size or task.eval_batch_size
    loader, info = task.build_eval_loader(w.dataset, w.split, data_dir, batch_size, vars(w.input))
    info["classes"] = w.label_names or info["classes"]
    model = create_model(w.name, pretrained=True)
    result = evaluate(model, loader, task, info)
    result.update(overlays(model, loader, task, info, save_overlays, w.name))
    result.update(detection_pictures(model, loader, task, info, boxes, sampling, w.name))
    return {"name": w.name, "dataset": w.dataset, "split": w.split, **result}


def eval_checkpoint(
    arch: str,
    path: str,
    data_dir: str | None,
    batch_size: int | None,
    save_overlays: int = 0,
    boxes=0,
    sampling=False,
) -> dict:
    """Evaluate a run's last.ckpt (its EMA weights when the run kept an EMA) or exported safetensors."""
    if path.endswith(".safetensors"):
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
        if "config" not in meta:
            sys.exit(f"error: {path} has no training config in its metadata; it was not written by train.py")
        cfg, info = from_dict(json.loads(meta["config"])), json.loads(meta["info"])
        model = create_model(
            arch,
            checkpoint_path=path,
            num_classes=info["num_classes"],
            in_chans=info["in_chans"],
            **{k: v for k, v in cfg.model.args.items() if k not in ("num_classes", "in_chans")},
        )
    else:
        state = load_checkpoint(path)
        cfg, info = from_dict(state["config"]), state["info"]
        model = build_model(cfg, info)
        weights = state["ema"] if state.get("ema") else state["model"]
        model.load_state_dict({k.removeprefix("module."): v for k, v in weights.items()})
    if cfg.model.name != arch:
        sys.exit(f"error: {path} holds a {cfg.model.name}, not a {arch}")
    task = get_task(cfg.task)
    loader, _ = task.build_eval_loader(
        cfg.data.dataset,
        cfg.data.eval_split,
        data_dir,
        batch_size or task.eval_batch_size,
        {"mean": info["mean"], "std": info["std"]},
    )
    result = evaluate(model, loader, task, info)
    result.update(overlays(model, loader, task, info, save_overlays, arch))
    result.update(detection_pictures(model, loader, task, info, boxes, sampling, arch))
    return {
        "name": arch,
        "checkpoint": path,
        "dataset": cfg.data.dataset,
        "split": cfg.data.eval_split,
        **result,
    }


def lookup(result: dict, metric: str) -> float | None:
    """A recorded metric's measured value; ``a/b`` reaches into nested results (``per_class_iou/sky``)."""
    value = result
    for part in metric.split("/"):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) else None


def eval_all(data_dir: str | None, batch_size: int | None) -> tuple[list[dict], bool]:
    rows, ok = [], True
    for w in load_manifest():
        task = get_task(w.task)
        row = {"name": w.name, "dataset": w.dataset, "split": w.split, "recorded": w.metrics}
        try:
            result = eval_published(w.name, data_dir, batch_size)
        except DatasetNotFoundError as err:
            row.update(status="dataset absent", detail=str(err))
            rows.append(row)
            continue
        # A recorded metric the evaluator no longer reports is a mismatch too (inf), never skipped.
        diffs = {
            k: (lookup(result, k) - v) if lookup(result, k) is not None else float("inf")
            for k, v in w.metrics.items()
        }
        bad = {k: d for k, d in diffs.items() if abs(d) > task.tolerance}
        row.update(measured=result, status="MISMATCH" if bad else "ok", tolerance=task.tolerance, diffs=diffs)
        ok &= not bad
        rows.append(row)
    return rows, ok


def print_rows(rows: list[dict]) -> None:
    print("\n| weights | dataset (split) | metric | recorded | measured | status |")
    print("|---|---|---|---:|---:|---|")
    for r in rows:
        if "measured" not in r:
            print(f"| {r['name']} | {r['dataset']} ({r['split']}) | | | | {r['status']} |")
            print(f"\n{r['detail']}\n")
            continue
        for k, v in r["recorded"].items():
            print(
                f"| {r['name']} | {r['dataset']} ({r['split']}) | {k} | {v} | {lookup(r['measured'], k)} | "
                f"{'ok' if abs(r['diffs'].get(k, 0)) <= r['tolerance'] else 'MISMATCH'} (±{r['tolerance']}) |"
            )


def print_result(r: dict) -> None:
    print(
        f"\n{r['name']} on {r['dataset']} ({r['split']}, {r['num_samples']} samples, {r['img_per_s']} img/s)"
    )
    for k, v in r.items():
        if isinstance(v, (int, float)) and k not in ("num_samples", "img_per_s"):
            print(f"  {k:>12}: {v}")
    for k, v in r.items():
        if isinstance(v, dict):
            print(f"  {k}:")
            for name, x in v.items():
                print(f"    {name:>14}: {x}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", help="arch or arch.tag (see zoo.list_models(pretrained=True))")
    parser.add_argument(
        "--all", action="store_true", help="every manifest entry, compared with its recorded metrics"
    )
    parser.add_argument(
        "--checkpoint", help="a run's last.ckpt or model.safetensors instead of published weights"
    )
    parser.add_argument("--data-dir", help="dataset folder (else $ZOO_DATA_DIR and the known places)")
    parser.add_argument(
        "--batch-size", type=int, help="default: the task's (250 for classification, 8 for the others)"
    )
    parser.add_argument("--out", help="JSON results file (default: runs/eval/<name>.json)")
    parser.add_argument(
        "--save-overlays",
        type=int,
        default=0,
        metavar="N",
        help="segmentation: save N images / ground truth / prediction to runs/eval/<name>_overlays.png",
    )
    parser.add_argument("--save-boxes", type=int, default=0, metavar="N", help="detection: boxes on N images")
    parser.add_argument("--save-sampling", action="store_true", help="detection: the deformable head's taps")
    args = parser.parse_args()
    pictures = (args.save_overlays, args.save_boxes, args.save_sampling)
    if args.all == bool(args.model):
        parser.error("give a MODEL[.TAG] or --all")
    if args.all:
        rows, ok = eval_all(args.data_dir, args.batch_size)
        if not rows:
            print("weights_manifest.json lists no weights yet")
        print_rows(rows)
        write_json(rows, args.out or "runs/eval/all.json")
        return 0 if ok else 1
    try:
        if args.checkpoint:
            result = eval_checkpoint(args.model, args.checkpoint, args.data_dir, args.batch_size, *pictures)
        else:
            result = eval_published(args.model, args.data_dir, args.batch_size, *pictures)
    except DatasetNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_result({k: v for k, v in result.items() if k != "confusion_matrix"})
    out = Path(args.out or f"runs/eval/{result['name']}.json")
    write_json(result, out)
    print(f"\nfull results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

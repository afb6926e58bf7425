#!/usr/bin/env python
"""Evaluate models and reproduce the benchmark table.

    python eval.py --all                                # every published weight vs its recorded numbers
    python eval.py resnet20.fashion_mnist               # one published weight (arch alone: its default tag)
    python eval.py resnet20 --checkpoint runs/fashion_mnist/resnet20/model.safetensors
    python eval.py resnet20 --checkpoint runs/fashion_mnist/resnet20/last.ckpt
    python eval.py wide_resnet14_2 --checkpoint runs/fashion_mnist/wide_resnet14_2/last.ckpt --hflip-tta
    python eval.py deeplabv3_resnet18 --checkpoint runs/camvid/deeplabv3_resnet18/last.ckpt --save-overlays 6
    python eval.py fcos_dcn_resnet18 --checkpoint runs/bccd/fcos_dcn_resnet18/last.ckpt --save-boxes 8 --save-sampling

Metrics come from torchmetrics. A table is printed and the full results (per-class numbers,
confusion matrix, ...) are written as JSON to --out. With --all, any metric further from the
manifest than the task's tolerance is flagged and the exit status is 1; a weight whose dataset
is absent is reported with how to get it, without failing the others.
"""

import argparse
import os
import sys
from pathlib import Path

from zoo._tasks import HFLIP_TTA_TASKS
from zoo.data import DatasetNotFoundError
from zoo.engine import CheckpointError, Evaluation, evaluate_published, evaluate_run, get_task, load_run
from zoo.engine.checkpoint import write_json
from zoo.engine.distributed import resolve_device
from zoo.engine.evaluator import differences, lookup
from zoo.tasks_use import get_use, list_uses
from zoo.viz import (
    NothingDetectedError,
    save_detection_boxes,
    save_sampling_points,
    save_segmentation_overlays,
)
from zoo.weights import WeightsError, find_weights, load_manifest

# eval.py's picture options, as an error names them, and the arguments they set. A task's
# ``TaskUse.eval_pictures`` says which apply to its models.
PICTURE_OPTIONS = {
    "--save-overlays": ("save_overlays",),
    "--save-boxes/--save-sampling": ("save_boxes", "save_sampling"),
}


def pictures(ev: Evaluation, overlays: int, boxes: int, sampling: bool) -> dict:
    """The pictures asked for (their task was checked before the evaluation ran)."""
    out, name = {}, ev.result["name"]
    if overlays:
        path = f"runs/eval/{name}_overlays.png"
        out["overlays"] = str(save_segmentation_overlays(ev.model, ev.loader, ev.info, overlays, path))
    if boxes:
        path = f"runs/eval/{name}_boxes.png"
        out["boxes"] = str(save_detection_boxes(ev.model, ev.loader, ev.info, boxes, path))
    head = getattr(ev.model, "head_conv", None)
    if sampling and head != "deform":  # known only once the weights are loaded: a note, not a crash
        print(
            f"--save-sampling: {name} has no deformable head (head_conv={head!r}); no picture",
            file=sys.stderr,
        )
    elif sampling:  # on the first image, at the centre of the most confident detection
        image = next(iter(ev.loader.batches(0)))[0][0].to(ev.device)
        path = f"runs/eval/{name}_sampling.png"
        try:
            out["sampling"] = str(save_sampling_points(ev.model, image, ev.info, path))
        except NothingDetectedError as err:  # no head location to show
            print(f"--save-sampling: {err}", file=sys.stderr)
    return {"pictures": out} if out else {}


def eval_all(data_dir: str | None, batch_size: int | None, device) -> tuple[list[dict], bool]:
    rows, ok = [], True
    for w in load_manifest():
        task = get_task(w.task)
        row = {"name": w.name, "dataset": w.dataset, "split": w.split, "recorded": w.metrics}
        try:
            result = evaluate_published(w.name, device, data_dir, batch_size).result
        except DatasetNotFoundError as err:
            row.update(status="dataset absent", detail=str(err))
            rows.append(row)
            continue
        diffs = differences(result, w.metrics)
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


def print_result(r: dict, task: str) -> None:
    print("\n".join(get_use(task).eval_lines(r)))


def check_pictures(parser: argparse.ArgumentParser, args, task: str) -> None:
    """Refuse a picture option that does not apply to the model's task."""
    applies = get_use(task).eval_pictures
    for flags, keys in PICTURE_OPTIONS.items():
        if any(getattr(args, k) and k not in applies for k in keys):
            tasks = [t for t in list_uses() if set(keys) & set(get_use(t).eval_pictures)]
            verb = "applies" if len(keys) == 1 else "apply"
            parser.error(f"{flags} {verb} to {'/'.join(tasks)} models, {args.model} is {task}")


def task_of(args) -> str:
    """The task of the model named, from the registry of weights or the run's file."""
    if args.checkpoint:
        return load_run(args.checkpoint).cfg.task
    return find_weights(args.model).task


def check_arguments(parser: argparse.ArgumentParser, args) -> None:
    """Everything that can be checked before an evaluation runs, so none is lost to a bad argument."""
    if args.all == bool(args.model):
        parser.error("give a MODEL[.TAG] or --all")
    if args.all and args.input_size:
        parser.error("--all measures each weight at its own input size; --input-size is for one MODEL")
    if args.all and args.hflip_tta:
        parser.error(
            "--all measures each weight as it was recorded (with test-time flips where its metrics "
            "include a *_hflip one); --hflip-tta is for one MODEL"
        )
    out = Path(args.out or "runs/eval/all.json")
    folder = out.parent if out.parent != Path("") else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parser.error(f"--out {args.out}: cannot create its folder ({err.strerror})")
    if out.is_dir():
        parser.error(f"--out {out} is a folder: name the JSON file to write, e.g. {out / 'results.json'}")
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        parser.error(f"--out {out}: not writable")


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
    parser.add_argument("--device", default="auto", help="auto (CUDA when available) | cpu | cuda | cuda:N")
    parser.add_argument("--out", help="JSON results file (default: runs/eval/<name>.json)")
    parser.add_argument(
        "--save-overlays",
        type=int,
        default=0,
        metavar="N",
        help="segmentation: save N images / ground truth / prediction to runs/eval/<name>_overlays.png",
    )
    parser.add_argument(
        "--hflip-tta",
        action="store_true",
        help="classification: also top1_hflip, the top-1 of the mean softmax over each image and "
        "its mirror image (a published weight whose metrics record it gets it without asking)",
    )
    parser.add_argument(
        "--input-size",
        type=int,
        metavar="N",
        help="classification: resize the images to NxN (bilinear, antialiased) instead of the weights' size",
    )
    parser.add_argument("--save-boxes", type=int, default=0, metavar="N", help="detection: boxes on N images")
    parser.add_argument("--save-sampling", action="store_true", help="detection: the deformable head's taps")
    args = parser.parse_args()
    check_arguments(parser, args)
    try:
        device = resolve_device(args.device)
        if args.all:
            rows, ok = eval_all(args.data_dir, args.batch_size, device)
            if not rows:
                print("weights_manifest.json lists no weights yet")
            print_rows(rows)
            write_json(rows, args.out or "runs/eval/all.json")
            return 0 if ok else 1
        task = task_of(args)
        check_pictures(parser, args, task)
        if args.hflip_tta and task not in HFLIP_TTA_TASKS:
            parser.error(f"--hflip-tta applies to {'/'.join(HFLIP_TTA_TASKS)} models, {args.model} is {task}")
        if args.input_size and task != "classification":
            parser.error(f"--input-size applies to classification models, {args.model} is {task}")
        if args.checkpoint:
            ev = evaluate_run(
                args.model,
                args.checkpoint,
                device,
                args.data_dir,
                args.batch_size,
                args.hflip_tta,
                args.input_size,
            )
        else:
            ev = evaluate_published(
                args.model, device, args.data_dir, args.batch_size, args.hflip_tta, args.input_size
            )
    except (DatasetNotFoundError, CheckpointError, WeightsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = {**ev.result, **pictures(ev, args.save_overlays, args.save_boxes, args.save_sampling)}
    print_result({k: v for k, v in result.items() if k != "confusion_matrix"}, ev.task.name)
    out = Path(args.out or f"runs/eval/{result['name']}.json")
    write_json(result, out)
    print(f"\nfull results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

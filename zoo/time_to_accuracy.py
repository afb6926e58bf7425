"""The metric against the training budget: what a CPU budget buys.

    python -m zoo.time_to_accuracy RUN_DIR... [--point LABEL RUN_DIR EVAL_JSON]
        [--img-per-s R] --out PNG

Each run folder (``metrics.jsonl``, ``summary.json`` and ``config.json``, as ``train.py``
writes them) is one curve: its evaluations against the epochs trained when each was made. A
point inside a schedule is not what a run of that length would reach, since its learning rate
has not yet decayed; the last point of each schedule is. Curves of several schedule lengths
together show what a shorter budget costs. The x axis is epochs, not the runs' stopwatches:
runs that share a CPU with other work train at a speed that changes with it, so their minutes
are not comparable; with ``--img-per-s`` (the trainer's throughput measured on a quiet machine,
``python -m zoo.bench photos``) a second axis gives the minutes of steps at that speed. The
table keeps each run's own stopwatch. ``--point`` adds a re-measurement of a run's final
weights (the JSON ``eval.py --out`` writes, for example at another input size) at that run's end.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ._io import atomic_write
from .ablate_report import metric_name
from .engine.run_folder import CONFIG, SUMMARY, RunFolderError, read_json, read_metrics
from .viz import pyplot


@dataclass(frozen=True)
class Curve:
    label: str
    run_dir: str
    epochs: list[float]  # when each evaluation was made
    values: list[float]  # the metric then
    images_per_epoch: int  # training images per epoch (steps x batch)
    train_size: int  # the training crops' side (0: the stored images)
    minutes: float  # the run's own stopwatch at its end (evaluations included)


@dataclass(frozen=True)
class Point:
    label: str
    epochs: float  # the run's length
    value: float
    source: str


def run_label(run_dir: Path) -> str:
    """What the run's config says it is: model, epochs, optimizer, training size."""
    cfg = read_json(run_dir, CONFIG)
    size = cfg["data"].get("train_size") or "stored"
    return f"{cfg['model']['name']}, {cfg['schedule']['epochs']} ep, {cfg['optim']['opt']}, train {size} px"


def read_curve(run_dir: Path, metric: str) -> Curve:
    """The run's evaluations of its raw weights (not the EMA) against the epochs trained."""
    if not (run_dir / SUMMARY).is_file():
        raise SystemExit(f"{run_dir}: no summary.json (expected a finished run folder)")
    evals = [r for r in read_metrics(run_dir) if r.get("kind") == "eval" and r.get("which") == "model"]
    if not evals or metric not in evals[-1]:
        raise SystemExit(f"{run_dir}/metrics.jsonl: no evaluation with {metric!r}")
    cfg, summary = read_json(run_dir, CONFIG), read_json(run_dir, SUMMARY)
    epochs = cfg["schedule"]["epochs"]
    if cfg["train"].get("max_steps") or summary["step"] % epochs:
        raise SystemExit(
            f"{run_dir}: stopped at step {summary['step']} (train.max_steps), not at the end of its "
            f"{epochs} epochs; only whole schedules are compared"
        )
    steps_per_epoch = summary["step"] // epochs
    return Curve(
        run_label(run_dir),
        str(run_dir),
        [r["step"] / steps_per_epoch for r in evals],
        [r[metric] for r in evals],
        steps_per_epoch * cfg["data"]["batch_size"],
        cfg["data"].get("train_size") or 0,
        round(summary["train_wall_time_s"] / 60, 1),
    )


def read_point(label: str, run_dir: Path, eval_json: Path, metric: str) -> Point:
    result = read_json(eval_json.parent, eval_json.name)
    value = result.get(metric) if isinstance(result, dict) else None
    if value is None:
        raise SystemExit(f"{eval_json}: no {metric!r} (expected the JSON that eval.py --out writes)")
    return Point(label, read_curve(run_dir, metric).epochs[-1], value, str(eval_json))


def plot(
    curves: list[Curve], points: list[Point], metric: str, title: str, out: Path, img_per_s: float = 0.0
) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for c in curves:
        ax.plot(c.epochs, c.values, "-o", markersize=3, label=c.label)
        ax.annotate(
            f"{c.values[-1]:.2f}",
            (c.epochs[-1], c.values[-1]),
            fontsize=7,
            xytext=(3, -9),
            textcoords="offset points",
        )
    for i, p in enumerate(points):
        ax.plot([p.epochs], [p.value], "*", markersize=9, label=p.label)
        ax.annotate(
            f"{p.value:.2f}",
            (p.epochs, p.value),
            fontsize=7,
            xytext=(-28, 3 - 10 * i),
            textcoords="offset points",
        )
    ax.set(xlabel="epochs trained", ylabel=metric_name(metric, percent_sign=True))
    if img_per_s and curves:
        per_epoch = curves[0].images_per_epoch / img_per_s / 60  # main() checked they all agree
        top = ax.secondary_xaxis("top", functions=(lambda e: e * per_epoch, lambda m: m / per_epoch))
        top.set_xlabel(f"minutes of steps at {img_per_s:g} img/s", fontsize=8)
    if title:
        ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    atomic_write(out, png.getvalue())
    return out


def table(curves: list[Curve], points: list[Point], metric: str) -> str:
    name = metric_name(metric)
    lines = [f"| run | epochs | its stopwatch (min) | {name} |", "|---|---:|---:|---:|"]
    lines += [f"| {c.label} | {c.epochs[-1]:g} | {c.minutes:.1f} | {c.values[-1]:.2f} |" for c in curves]
    lines += [f"| {p.label} | {p.epochs:g} | | {p.value:.2f} |" for p in points]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zoo.time_to_accuracy",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders, one curve each")
    parser.add_argument(
        "--point",
        nargs=3,
        action="append",
        default=[],
        metavar=("LABEL", "RUN_DIR", "EVAL_JSON"),
        help="a re-measurement of RUN_DIR's final weights (eval.py --out JSON), drawn at its last epoch",
    )
    parser.add_argument("--metric", default="top1")
    parser.add_argument(
        "--img-per-s", type=float, default=0.0, help="a quiet trainer throughput: a minutes axis from it"
    )
    parser.add_argument("--title", default="", help="e.g. the CPU that trained the runs")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--json", type=Path, help="also write the curves and points here")
    args = parser.parse_args(argv)
    try:
        return _report(args)
    except RunFolderError as err:
        raise SystemExit(str(err)) from None
    except KeyError as err:  # a config.json or summary.json of another kind
        raise SystemExit(f"a run folder's config.json or summary.json has no {err}") from None


def _report(args) -> int:
    curves = [read_curve(r, args.metric) for r in args.runs]
    sizes = {(c.images_per_epoch, c.train_size) for c in curves}
    if args.img_per_s and len(sizes) > 1:
        raise SystemExit(
            "--img-per-s converts epochs to minutes for one kind of epoch, but the runs differ in "
            f"images per epoch or training size: {sorted(sizes)}; draw them without it"
        )
    points = [read_point(label, Path(r), Path(e), args.metric) for label, r, e in args.point]
    print(f"wrote {plot(curves, points, args.metric, args.title, args.out, args.img_per_s)}")
    if args.json:
        data = {
            "metric": args.metric,
            "curves": [asdict(c) for c in curves],
            "points": [asdict(p) for p in points],
        }
        atomic_write(args.json, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    print(table(curves, points, args.metric))
    return 0


if __name__ == "__main__":
    sys.exit(main())

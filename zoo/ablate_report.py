"""Tables, claim readings and pictures from an ablation matrix's run folders.

Everything here is computed from what the runs wrote (``summary.json``, ``metrics.jsonl``,
``config.json``) and from the models themselves (parameters, MACs, gradient norms at
initialisation): nothing is typed in. What is compared with what, and which pictures are
drawn, is the matrix file's (``claims``, ``curves``, ``extras``); the metric is its ``metric``
(top-1, mIoU, mAP, ...). ``python -m zoo.ablate_report MATRIX`` writes ``results.json`` (the
numbers the results document's tables are generated from), ``table.md`` and the PNGs into the
report folder; ``--ideas MATRIX...`` prints the table that puts each idea's difference on one
dataset beside its difference on the others.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ._builder import create_model, list_models, model_info
from ._io import atomic_write
from .ablate import Claim, Comparison, Matrix, MatrixRun, first_seed_runs, load_matrix, plan, summary_device
from .config import ConfigError, RunConfig
from .data import dataset_info, load_dataset, normalize
from .engine.checkpoint import write_json
from .engine.run_folder import WEIGHTS, read_metrics
from .explain import attention_maps, attention_rollout, grad_cam, heatmap_overlay
from .models.vit import VisionTransformer
from .readme import splice_block
from .viz import pyplot

# How the report names a metric, and in which unit a difference of it is read ("points" for
# percentages; mAP is a fraction).
METRIC_NAMES = {
    "top1": ("top-1", "points"),
    "miou": ("mIoU", "points"),
    "pixel_acc": ("pixel accuracy", "points"),
    "map": ("mAP@[.5:.95]", ""),
    "map_50": ("mAP@.5", ""),
}


def metric_name(metric: str, percent_sign: bool = False) -> str:
    name, unit = METRIC_NAMES.get(metric, (metric, ""))
    return f"{name} %" if percent_sign and unit == "points" else name


def _unit(metric: str) -> str:
    unit = METRIC_NAMES.get(metric, ("", ""))[1]
    return f" {unit}" if unit else ""


@dataclass
class SeedResult:
    seed: int
    value: float  # the matrix's metric, from the run's final evaluation
    minutes: float
    img_per_s: float  # median training throughput over the run's log records
    threads: int  # torch threads the run trained with (0: the default, all cores)
    precision: str  # "bf16" or "fp32", as the run chose or was told
    device: str = "cpu"  # where it trained (the trainer's summary), e.g. "cuda:0 (NVIDIA H100 80GB HBM3)"

    @property
    def on_cpu(self) -> bool:
        return self.device == "cpu"

    @property
    def where(self) -> str:
        """How the table marks a seed not trained on a CPU: (GPU) for CUDA, else the device."""
        return "" if self.on_cpu else " (GPU)" if self.device.startswith("cuda") else f" ({self.device})"


@dataclass
class RowResult:
    name: str
    group: str
    model: str
    args: dict[str, Any]
    tag: str
    params: int
    macs: int
    seeds: list[SeedResult] = field(default_factory=list)
    diverged: list[int] = field(default_factory=list)  # seeds whose loss went non-finite

    @property
    def values(self) -> list[float]:
        return [s.value for s in self.seeds]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.seeds else math.nan

    @property
    def cpu_seeds(self) -> list[SeedResult]:
        """The seeds whose speed and minutes are comparable across rows: the CPU-trained ones
        (a GPU seed counts for accuracy, but its minutes would make a row look cheap)."""
        return [s for s in self.seeds if s.on_cpu]

    @property
    def cpu_minutes(self) -> float:
        cpu = self.cpu_seeds
        return statistics.fmean(s.minutes for s in cpu) if cpu else math.nan

    @property
    def cpu_img_per_s(self) -> float:
        speeds = [s.img_per_s for s in self.cpu_seeds if not math.isnan(s.img_per_s)]
        return statistics.median(speeds) if speeds else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (nan with fewer than two)."""
        return statistics.stdev(self.values) if len(self.seeds) > 1 else math.nan


@dataclass
class SweepResult:
    """A short sweep run's final metric of the raw weights: over a few epochs the EMA (decay
    0.998, a horizon of ~500 steps) still lags far behind them (at lr 0.01 for 3 epochs:
    22.83 against 70.74 top-1), so it would measure the EMA, not the learning rate."""

    row: str
    key: str
    value: Any
    result: float | None  # None when the run diverged
    diverged: bool
    ema_result: float | None = None


# -- reading run folders -----------------------------------------------------------------


def seed_result(run: MatrixRun, metric: str) -> SeedResult:
    summary, config = run.summary(), run.trained_config()
    speeds = [r["img_per_s"] for r in read_metrics(run.out_dir) if r.get("kind") == "train"]
    return SeedResult(
        seed=run.seed,
        value=float(summary["final"][metric]),
        minutes=round(summary["train_wall_time_s"] / 60, 2),
        img_per_s=round(statistics.median(speeds), 1) if speeds else math.nan,
        threads=int(config["train"]["threads"]),
        precision="bf16" if config["train"]["amp_bf16"] else "fp32",
        device=summary_device(summary),
    )


def recipe_of(matrix: Matrix) -> RunConfig:
    return first_seed_runs(matrix)[0].config(matrix)


def architecture_args(args: dict) -> dict:
    """A row's ``create_model`` arguments without ``backbone_weights``: the architecture alone
    (what a cost depends on, and what a run's own weights file is loaded into)."""
    return {k: v for k, v in args.items() if k != "backbone_weights"}


def model_cost(model: str, args: dict, shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10):
    """(parameters, MACs of one image of ``shape``) of the row's model as trained."""
    net = create_model(model, in_chans=shape[0], num_classes=num_classes, **architecture_args(args))
    info = model_info(net, input_size=shape)
    return info["params"], int(info["macs"])


def collect(matrix: Matrix) -> tuple[list[RowResult], list[SweepResult]]:
    cfg = recipe_of(matrix)
    info = dataset_info(cfg.data.dataset)
    shape = (info.in_chans, *info.input_size)
    metric = matrix.metric
    rows = {
        r.name: RowResult(
            r.name,
            r.group,
            r.model,
            dict(r.args),
            r.tag,
            *model_cost(r.model, r.args, shape, info.num_classes),
        )
        for r in matrix.rows
    }
    sweeps = []
    for run in plan(matrix):
        state = run.state()
        if run.sweep:
            if state in ("done", "diverged"):
                value = ema = None
                if state == "done":
                    ema = seed_result(run, metric).value
                    raw = [
                        r
                        for r in read_metrics(run.out_dir)
                        if r.get("kind") == "eval" and r.get("which") == "model"
                    ]
                    value = raw[-1][metric]
                sweeps.append(
                    SweepResult(run.row.name, run.sweep, run.sweep_value, value, state == "diverged", ema)
                )
        elif state == "done":
            rows[run.row.name].seeds.append(seed_result(run, metric))
        elif state == "diverged":
            rows[run.row.name].diverged.append(run.seed)
    return list(rows.values()), sweeps


# -- claims --------------------------------------------------------------------------------


def compare(a: RowResult, b: RowResult) -> tuple[float, float, str]:
    """(mean of b - mean of a, its standard error, verdict) over the two rows' seeds."""
    return difference(a.values, b.values)


def difference(a: list[float], b: list[float]) -> tuple[float, float, str]:
    """(mean of b - mean of a, its standard error, verdict). The difference counts when it is
    more than twice its standard error sqrt(s_a^2/n_a + s_b^2/n_b): 'higher' / 'lower', else
    'within noise'; with fewer than two seeds on either side there is no spread to judge by."""
    diff = statistics.fmean(b) - statistics.fmean(a)
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan, "one seed: spread unknown"
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    if abs(diff) > 2 * se:
        return diff, se, "higher" if diff > 0 else "lower"
    return diff, se, "within noise"


def _digits(metric: str) -> int:
    return 4 if metric.startswith("map") else 2


def _fmt_cmp(a: RowResult, b: RowResult, metric: str = "top1") -> str:
    diff, se, verdict = compare(a, b)
    d = _digits(metric)
    spread = f" ± {se:.{d}f}" if not math.isnan(se) else ""
    return f"`{b.name}` vs `{a.name}`: {diff:+.{d}f}{spread}{_unit(metric)} ({verdict})"


def _count(n: int) -> str:
    """A parameter count as the tables write it: 272K, 4.02M."""
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def _cost_note(a: RowResult, b: RowResult) -> str:
    """The parameters and MACs of ``b`` against ``a``, where they differ by a tenth or more."""
    if abs(b.params / a.params - 1) < 0.1 and abs(b.macs / a.macs - 1) < 0.1:
        return ""
    return (
        f" with {_count(b.params)} parameters against {_count(a.params)} ({b.params / a.params:.2f}x) "
        f"and {b.macs / a.macs:.2f}x the MACs"
    )


def _fmt_comparison(c: Comparison, by: dict[str, RowResult], metric: str) -> str:
    a, b = by[c.base], by[c.row]
    return (f"{c.label}: " if c.label else "") + _fmt_cmp(a, b, metric) + _cost_note(a, b)


def gradient_reading(norms: dict[str, list[float]]) -> str:
    """How the gradient norm changes from the last 3x3 conv back to the first, per model."""
    parts = []
    for name, values in norms.items():
        if values[-1] == 0 or values[0] == 0:
            zero = sum(v == 0 for v in values)
            parts.append(f"`{name}`: {zero} of {len(values)} convs get exactly zero gradient")
        else:
            parts.append(f"`{name}`: first / last conv {values[0] / values[-1]:.3g}x")
    return "**Gradients at initialisation** (3x3 convs, one batch): " + "; ".join(parts) + "."


def claim_readings(
    rows: list[RowResult],
    sweeps: list[SweepResult],
    norms: dict[str, list[float]] | None = None,
    claims: list[Claim] = (),
    metric: str = "top1",
) -> list[str]:
    """One bullet per claim of the matrix, built from the numbers; comparisons whose rows have
    no results yet are left out, and so is a claim with none left."""
    by = {r.name: r for r in rows if r.seeds}
    lines = [gradient_reading(norms)] if norms else []
    for claim in claims:
        parts = [_fmt_comparison(c, by, metric) for c in claim.compare if c.base in by and c.row in by]
        if parts:
            note = f" ({claim.note})" if claim.note else ""
            lines.append(f"**{claim.title}**{note}: " + "; ".join(parts) + ".")
    if sweeps:
        per_row: dict[str, list[str]] = {}
        d = _digits(metric)
        for s in sweeps:
            per_row.setdefault(s.row, []).append(
                f"{s.value}: {'diverged' if s.diverged else f'{s.result:.{d}f}'}"
            )
        what = "Learning rates" if sweeps[0].key == "lr" else f"Sweep `{sweeps[0].key}`"
        lines.append(
            f"**{what}** (one seed, short budget, {metric_name(metric)} of the raw weights): "
            + "; ".join(f"`{row}` " + ", ".join(v) for row, v in per_row.items())
            + "."
        )
    failed = [f"`{r.name}` (seed {', '.join(map(str, r.diverged))})" for r in rows if r.diverged]
    if failed:
        lines.append(
            "**Diverged** (the loss went non-finite under the shared recipe): " + ", ".join(failed) + "."
        )
    return lines


# -- table -------------------------------------------------------------------------------


def _pm(r: RowResult, d: int = 2) -> str:
    diverged = f"diverged (seed {', '.join(map(str, r.diverged))})" if r.diverged else ""
    if not r.seeds:
        return diverged or "not run yet"
    value = f"{r.mean:.{d}f} (1 seed)" if len(r.seeds) == 1 else f"{r.mean:.{d}f} ± {r.std:.{d}f}"
    return f"{value}; {diverged}" if diverged else value


def render_table(rows: list[RowResult], metric: str = "top1") -> str:
    d = _digits(metric)
    lines = [
        f"| idea | row | model | {metric_name(metric, True)} (mean ± std) | seeds | params | MACs | train img/s (CPU) "
        "| minutes (CPU) |",
        "|---|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        seeds = ", ".join(f"{s.value:.{d}f}{s.where}" for s in r.seeds) or "-"
        ips = "-" if math.isnan(r.cpu_img_per_s) else f"{r.cpu_img_per_s:.0f}"
        mins = "-" if math.isnan(r.cpu_minutes) else f"{r.cpu_minutes:.1f}"
        args = "".join(f", {k}={v}" for k, v in r.args.items())
        lines.append(
            f"| {r.group} | `{r.name}` | `{r.model}`{args} | {_pm(r, d)} | {seeds} | {_count(r.params)} "
            f"| {r.macs / 1e6:.1f}M | {ips} | {mins} |"
        )
    return "\n".join(lines)


def render_markdown(
    rows: list[RowResult],
    sweeps: list[SweepResult],
    norms: dict[str, list[float]] | None = None,
    claims: list[Claim] = (),
    metric: str = "top1",
) -> str:
    readings = "\n".join(f"- {line}" for line in claim_readings(rows, sweeps, norms, claims, metric))
    return render_table(rows, metric) + ("\n\n" + readings if readings else "")


def matrix_markdown(matrix: Matrix, norms: dict[str, list[float]] | None = None) -> str:
    """The table and readings of ``matrix`` from its run folders."""
    return render_markdown(*collect(matrix), norms, matrix.claims, matrix.metric)


# -- pictures ----------------------------------------------------------------------------


def epoch_curves(run_dir: Path, metric: str = "top1") -> tuple[list[int], list[float], list[float]]:
    """(epochs, mean training loss of the epoch, the metric of the raw weights after it), for
    the epochs that were evaluated."""
    log = read_metrics(run_dir)
    losses: dict[int, list[float]] = {}
    for r in log:
        if r.get("kind") == "train":
            losses.setdefault(r["epoch"], []).append(r["loss"])
    acc = {r["epoch"]: r[metric] for r in log if r.get("kind") == "eval" and r.get("which") == "model"}
    epochs = sorted(set(losses) & set(acc))
    return [e + 1 for e in epochs], [statistics.fmean(losses[e]) for e in epochs], [acc[e] for e in epochs]


def curve_groups(matrix: Matrix, rows: list[RowResult]) -> dict[str, list[str]]:
    """The matrix's ``curves``; without them, one picture per group, the first row (the
    baseline) drawn in each."""
    if matrix.curves:
        return matrix.curves
    base = rows[0].name
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(r.group, [base] if r.name != base else []).append(r.name)
    return groups


def plot_groups(matrix: Matrix, rows: list[RowResult], out: Path) -> list[Path]:
    """Per picture: training loss and eval error against epochs, seed 0 of each row (He et al. Fig. 6)."""
    plt = pyplot()
    paths = []
    first = {r.row.name: r for r in first_seed_runs(matrix)}
    metric, split = matrix.metric, recipe_of(matrix).data.eval_split
    percent = metric in ("top1", "miou", "pixel_acc")
    for group, names in curve_groups(matrix, rows).items():
        fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 3.8))
        drawn = 0
        for name in names:
            if name not in first or first[name].state() != "done":  # finished runs only
                continue
            epochs, loss, acc = epoch_curves(first[name].out_dir, metric)
            if not epochs:
                continue
            style = "--" if name.startswith("plain") else "-"
            marker = "o" if len(epochs) < 8 else None  # few evaluations: show where they are
            ax_loss.plot(epochs, loss, style, label=name, marker=marker, markersize=3)
            ax_err.plot(
                epochs,
                [100 - a if percent else a for a in acc],
                style,
                label=name,
                marker=marker,
                markersize=3,
            )
            drawn += 1
        if drawn:
            ax_loss.set(
                xlabel="epoch", ylabel="training loss (label-smoothed)", title=f"{group}: training loss"
            )
            what = f"{split} error %" if percent else f"{split} {metric_name(metric)}"
            ax_err.set(xlabel="epoch", ylabel=what, title=f"{group}: {what} (seed {matrix.seeds[0]})")
            if percent:
                ax_err.set_ylim(bottom=max(0, ax_err.get_ylim()[0]))
            ax_err.legend(fontsize=8)
            fig.tight_layout()
            path = out / f"curves_{group}.png"
            fig.savefig(path, dpi=110)
            paths.append(path)
        plt.close(fig)
    return paths


def per_class_values(matrix: Matrix) -> dict[str, dict[str, list[float]]]:
    """Row -> per-class metric key (``per_class_iou/pole``, ``per_class_ap/WBC``, ...) -> its
    value in each finished seed's final evaluation."""
    values: dict[str, dict[str, list[float]]] = {}
    for run in plan(matrix):
        if run.sweep or run.state() != "done":
            continue
        final = run.summary()["final"]
        row = values.setdefault(run.row.name, {})
        for key, v in final.items():
            if key.startswith("per_class_") and isinstance(v, (int, float)):
                row.setdefault(key, []).append(float(v))
    return values


def per_class_differences(matrix: Matrix) -> list[tuple[Comparison, dict[str, tuple[float, float, str]]]]:
    """For each claim's comparison whose rows both finished: per class, the difference of the
    row from its base, its standard error and verdict (the two-standard-error rule)."""
    values, out = per_class_values(matrix), []
    for claim in matrix.claims:
        for c in claim.compare:
            base, row = values.get(c.base, {}), values.get(c.row, {})
            keys = [k for k in base if k in row]
            if keys:
                out.append((c, {k: difference(base[k], row[k]) for k in keys}))
    return out


def plot_per_class(matrix: Matrix, out: Path) -> list[Path]:
    """One panel per comparison: each class's difference (row - base), with two standard errors
    where both rows have two seeds or more; a bar is solid where the difference counts."""
    diffs = per_class_differences(matrix)
    if not diffs:
        return []
    plt = pyplot()
    classes = list(diffs[0][1])
    fig, axes = plt.subplots(
        1, len(diffs), figsize=(3.2 * len(diffs) + 1.2, 0.32 * len(classes) + 1.4), sharey=True, squeeze=False
    )
    unit = _unit(matrix.metric).strip() or matrix.metric
    for ax, (c, per_class) in zip(axes[0], diffs):
        names = [k for k in classes if k in per_class]
        d = [per_class[k][0] for k in names]
        err = [2 * per_class[k][1] if not math.isnan(per_class[k][1]) else 0 for k in names]
        counts = [per_class[k][2] in ("higher", "lower") for k in names]
        ys = range(len(names))
        ax.barh(ys, d, xerr=err, color=["tab:blue" if k else "lightsteelblue" for k in counts], capsize=2)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(list(ys), [k.split("/", 1)[-1] for k in names], fontsize=8)
        ax.set_title(f"{c.row}\nvs {c.base}", fontsize=8)
        ax.set_xlabel(f"difference ({unit})", fontsize=8)
        ax.invert_yaxis()
    fig.suptitle(f"{matrix.title or matrix.out_dir.name}: per-class differences", fontsize=9)
    fig.tight_layout()
    path = out / "per_class.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_cost(rows: list[RowResult], out: Path, metric: str = "top1", title: str = "") -> list[Path]:
    """The metric against parameters and against training minutes, one point per row (mean ±
    std; the minutes of the CPU-trained seeds, and rows without one left out of that panel)."""
    plt = pyplot()
    done = [r for r in rows if r.seeds]
    if not done:
        return []
    timed = [r for r in done if r.cpu_seeds]  # a GPU seed's minutes would make a row look cheap
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (xlabel, points, log) in zip(
        axes,
        [
            ("parameters", [(r, r.params) for r in done], True),
            (
                "CPU training minutes (mean over CPU-trained seeds)",
                [(r, r.cpu_minutes) for r in timed],
                False,
            ),
        ],
    ):
        xs = [x for _, x in points]
        for r, x in points:
            ax.errorbar(x, r.mean, yerr=0 if math.isnan(r.std) else r.std, fmt="o", capsize=3)
            ax.annotate(r.name, (x, r.mean), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel=xlabel, ylabel=metric_name(metric, True))
        if log:
            _log_axis_in_thousands(ax, xs)
    fig.suptitle(f"{title + ', ' if title else ''}one recipe: {metric_name(metric)} against cost")
    fig.tight_layout()
    path = out / "accuracy_vs_cost.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _log_axis_in_thousands(ax, xs: list[float]) -> None:
    """A log x axis with ticks at 1, 2 and 5 times powers of ten, labelled 200K, 500K, 1M, ...:
    matplotlib's default labels every minor tick of a log axis (2x10^5, 3x10^5, ...), and the
    labels run into each other. The axis is widened until at least two ticks fall on it."""
    from matplotlib.ticker import NullFormatter

    candidates = [m * 10.0**e for e in range(13) for m in (1, 2, 5)]
    lo, hi = min(xs) / 1.3, max(xs) * 1.3
    ticks = [t for t in candidates if lo <= t <= hi]
    if len(ticks) < 2:
        lo = max([t for t in candidates if t <= lo], default=lo)
        hi = min([t for t in candidates if t >= hi], default=hi)
        ticks = [t for t in candidates if lo <= t <= hi]
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xticks(ticks, [_si(t) for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def _si(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def plot_sweep(sweeps: list[SweepResult], out: Path, metric: str = "top1") -> list[Path]:
    plt = pyplot()
    if not sweeps:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in dict.fromkeys(s.row for s in sweeps):
        pts = sorted((s for s in sweeps if s.row == row), key=lambda s: float(s.value))
        xs = [float(s.value) for s in pts]
        ys = [s.result if not s.diverged else math.nan for s in pts]
        (line,) = ax.plot(xs, ys, "o-", label=row)
        for s in pts:
            if s.diverged:
                ax.plot(float(s.value), 10, "x", color=line.get_color(), markersize=10)
    ax.set(
        xscale="log",
        xlabel=f"{sweeps[0].key} (peak)",
        ylabel=f"{metric_name(metric, True)}, raw weights (x: diverged)",
        title="Learning-rate sweep (one seed, short budget)",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "lr_sweep.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def test_batch(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` Fashion-MNIST test images, normalised, and their labels."""
    data = load_dataset("fashion_mnist", "test")
    x = data.images[:n].float() / 255
    return normalize(x, data.mean, data.std), data.labels[:n]


def gradient_norms(
    model_name: str, batch: tuple[torch.Tensor, torch.Tensor], seed: int = 0, unit_last_bn: bool = False
) -> list[float]:
    """L2 norm of the cross-entropy gradient of every 3x3 conv weight, input to output, of a
    freshly initialised model (train mode, float32) on one real batch. The ResNets zero the
    last BatchNorm scale of each residual branch at initialisation (so each block starts as
    the identity, and no gradient reaches its convolutions at step 0); ``unit_last_bn`` sets
    those scales to 1 instead, the initialisation a plain net has."""
    torch.manual_seed(seed)
    model = create_model(model_name, in_chans=1, num_classes=10).train()
    if unit_last_bn:
        for block in model.modules():
            if hasattr(block, "zero_init_last"):
                torch.nn.init.ones_(block.bn2.weight)
    x, y = batch
    torch.nn.functional.cross_entropy(model(x), y).backward()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    return [m.weight.grad.norm().item() for m in convs]


def plot_gradients(norms: dict[str, list[float]], out: Path) -> list[Path]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in norms.items():
        ax.plot(range(1, len(values) + 1), values, "--" if name.startswith("plain") else "-", label=name)
    ax.set(
        yscale="log",
        xlabel="3x3 conv layer (input to output)",
        ylabel="gradient norm at initialisation",
        title="Gradient norms at initialisation, one batch of 128 test images",
    )
    ax.legend()
    fig.tight_layout()
    path = out / "gradient_norms.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_cbam(
    weights_file: Path, args: dict, out: Path, n: int = 6, model_name: str = "cbam_resnet20"
) -> list[Path]:
    """Fashion-MNIST test images with the spatial attention of the last CBAM module of each
    stage (``zoo.explain.attention_maps``, the maps ``zoo explain`` draws)."""
    plt = pyplot()
    model = create_model(model_name, in_chans=1, num_classes=10, **args)
    model.load_state_dict(load_file(weights_file))
    x, _ = test_batch(n)
    maps = attention_maps(model, x)
    stages = [maps.spatial[name] for name in maps.stages]
    fig, axes = plt.subplots(n, 1 + len(stages), figsize=(1.5 * (1 + len(stages)), 1.6 * n))
    for i in range(n):
        axes[i, 0].imshow(x[i, 0].numpy(), cmap="gray")
        for j, m in enumerate(stages):
            axes[i, j + 1].imshow(x[i, 0].numpy(), cmap="gray")
            axes[i, j + 1].imshow(m[i].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        for ax in axes[i]:
            ax.axis("off")
    for j, title in enumerate(["image", *(f"stage {k + 1}" for k in range(len(stages)))]):
        axes[0, j].set_title(title, fontsize=9)
    fig.suptitle("CBAM spatial attention (last block of each stage)", fontsize=10)
    fig.tight_layout()
    path = out / "cbam_attention.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _no_nan(obj: Any) -> Any:
    """JSON has no NaN: a missing spread (one seed) is written as null."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nan(v) for v in obj]
    return obj


def markers(matrix: Matrix) -> tuple[str, str]:
    """The comments that enclose a matrix's generated block in a Markdown file, named after
    its ``out_dir`` (``results/imagenette_concept`` -> ``imagenette_concept``)."""
    key = matrix.out_dir.name
    return f"<!-- {key}:start -->", f"<!-- {key}:end -->"


def splice(text: str, block: str, where: str = "README", marks: tuple[str, str] = ("", "")) -> str:
    """``text`` with what lies between the markers ``marks`` replaced by ``block``."""
    return splice_block(text, block, *marks, where)


def splice_file(path: Path, block: str, marks: tuple[str, str]) -> bool:
    """Rewrite the block between ``marks`` in ``path``; whether anything changed."""
    text = path.read_text(encoding="utf-8")
    new = splice(text, block, str(path), marks)
    if new != text:
        atomic_write(path, new.encode("utf-8"))
    return new != text


def initial_gradient_norms() -> dict[str, list[float]]:
    """plain56 against resnet56 as initialised and with its branches' last BN scale at 1."""
    batch = test_batch()
    return {
        "plain56": gradient_norms("plain56", batch),
        "resnet56": gradient_norms("resnet56", batch),
        "resnet56, last BN scale 1": gradient_norms("resnet56", batch, unit_last_bn=True),
    }


def explanation(model: torch.nn.Module, x: torch.Tensor) -> tuple[str, torch.Tensor]:
    """What ``zoo explain`` shows first for a classifier: the ViT's attention rollout, a CBAM
    model's spatial attention (last stage), else Grad-CAM of the predicted class; (N, H, W)."""
    if isinstance(model, VisionTransformer):
        return "attention rollout", attention_rollout(model, x)
    maps = attention_maps(model, x)
    if maps.spatial:
        return "CBAM spatial (last stage)", maps.spatial[maps.stages[-1]]
    return "Grad-CAM", grad_cam(model, x)[0]


def plot_explain(matrix: Matrix, out: Path, n: int = 6) -> list[Path]:
    """``n`` evaluation images (spread over the classes) and each tagged row's map of them, from
    its first seed's weights: the published copy where the manifest has it (so a clean checkout
    draws the same picture), else the run folder's file. One column per row."""
    cfg = recipe_of(matrix)
    published = set(list_models(pretrained=True))
    runs = [
        r
        for r in first_seed_runs(matrix)
        if r.row.tag and (f"{r.row.model}.{r.row.tag}" in published or (r.out_dir / WEIGHTS).is_file())
    ]
    if not runs:
        return []
    data = load_dataset(cfg.data.dataset, cfg.data.eval_split)
    every = max(1, len(data) // n)
    shown, labels = data.images[: n * every : every], data.labels[: n * every : every]
    x = normalize(shown.float() / 255, data.mean, data.std)
    info = dataset_info(cfg.data.dataset)
    columns = []
    for run in runs:
        name = f"{run.row.model}.{run.row.tag}"
        if name in published:
            model = create_model(name, pretrained=True)
        else:
            model = create_model(
                run.row.model,
                in_chans=info.in_chans,
                num_classes=info.num_classes,
                **architecture_args(run.row.args),
            )
            model.load_state_dict(load_file(run.out_dir / WEIGHTS))
        model.eval()
        kind, heat = explanation(model, x)
        with torch.no_grad():
            pred = model(x).argmax(1)
        columns.append((run.row.name, kind, heat, pred))
    plt = pyplot()
    fig, axes = plt.subplots(n, 1 + len(columns), figsize=(1.9 * (1 + len(columns)), 1.9 * n), squeeze=False)
    classes = info.classes
    for i in range(n):
        axes[i, 0].imshow(shown[i].permute(1, 2, 0).numpy())
        axes[i, 0].set_title(classes[int(labels[i])], fontsize=7)
        for j, (name, kind, heat, pred) in enumerate(columns):
            axes[i, j + 1].imshow(heatmap_overlay(shown[i], heat[i]).permute(1, 2, 0).numpy())
            axes[i, j + 1].set_title(
                f"{name}\n{kind}: {classes[int(pred[i])]}" if i == 0 else classes[int(pred[i])], fontsize=6
            )
        for ax in axes[i]:
            ax.axis("off")
    fig.suptitle(f"{cfg.data.eval_split} images; seed-0 weights (prediction above)", fontsize=8)
    fig.tight_layout()
    path = out / "explain.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def write_report(matrix: Matrix, out: Path, readme: Path | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    rows, sweeps = collect(matrix)
    m = matrix.metric
    pictures = (
        plot_groups(matrix, rows, out) + plot_cost(rows, out, m, matrix.title) + plot_sweep(sweeps, out, m)
    )
    norms = None
    if "gradient_norms" in matrix.extras:
        norms = initial_gradient_norms()
        pictures += plot_gradients(norms, out)
    if "cbam_attention" in matrix.extras:
        cbam = next((r for r in first_seed_runs(matrix) if r.row.model.startswith("cbam_")), None)
        if cbam is not None and (cbam.out_dir / WEIGHTS).is_file():
            pictures += plot_cbam(cbam.out_dir / WEIGHTS, cbam.row.args, out, model_name=cbam.row.model)
    if "explain" in matrix.extras:
        pictures += plot_explain(matrix, out)
    if "per_class" in matrix.extras:
        pictures += plot_per_class(matrix, out)
    results = {
        "matrix": str(matrix.path),
        "metric": m,
        "rows": [asdict(r) | {"mean": r.mean, "std": r.std} for r in rows],
        "sweeps": [asdict(s) for s in sweeps],
        "gradient_norms": norms,
    }
    results = _no_nan(results)
    write_json(results, out / "results.json")
    markdown = render_markdown(rows, sweeps, norms, matrix.claims, m)
    atomic_write(out / "table.md", (markdown + "\n").encode("utf-8"))
    if readme is not None and splice_file(readme, markdown, markers(matrix)):
        print(f"updated the {matrix.out_dir.name} block in {readme}")
    for p in pictures:
        print(f"wrote {p}")
    print(f"wrote {out / 'results.json'} and {out / 'table.md'}")
    return results


# -- one idea on several datasets ----------------------------------------------------------------


IDEAS_START, IDEAS_END = "<!-- ideas-table:start -->", "<!-- ideas-table:end -->"


def ideas_table(matrices: list[Matrix]) -> str:
    """One row per idea (a comparison the matrices name with ``idea``), one column per matrix:
    the difference, its standard error and the verdict, as the concept tables read it."""
    ideas: dict[str, dict[str, str]] = {}
    titles = []
    for matrix in matrices:
        title = matrix.title or matrix.out_dir.name
        titles.append(title)
        rows, _ = collect(matrix)
        by = {r.name: r for r in rows if r.seeds}
        for claim in matrix.claims:
            for c in claim.compare:
                if not c.idea:
                    continue
                cell = "not run yet"
                if c.base in by and c.row in by:
                    diff, se, verdict = compare(by[c.base], by[c.row])
                    d = _digits(matrix.metric)
                    spread = f" ± {se:.{d}f}" if not math.isnan(se) else ""
                    cell = f"{diff:+.{d}f}{spread} ({verdict}; `{c.row}` vs `{c.base}`)"
                ideas.setdefault(c.idea, {})[title] = cell
    lines = [
        "| idea | "
        + " | ".join(f"{t}: {metric_name(m.metric)}{_unit(m.metric)}" for t, m in zip(titles, matrices))
        + " |",
        "|---|" + "---|" * len(titles),
    ]
    for idea, cells in ideas.items():
        lines.append(f"| {idea} | " + " | ".join(cells.get(t, "-") for t in titles) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.ablate_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("matrix", nargs="+", help="the matrix file(s) the runs were made from")
    parser.add_argument(
        "--out", type=Path, help="folder for the pictures and tables (default: <out_dir>/report)"
    )
    parser.add_argument(
        "--readme",
        type=Path,
        help="also rewrite the matrix's block here (between <!-- OUT_DIR_NAME:start/end --> markers)",
    )
    parser.add_argument(
        "--ideas",
        action="store_true",
        help="only the idea x dataset table of the matrices (rewritten between the ideas-table "
        "markers of --readme, else printed)",
    )
    args = parser.parse_args(argv)
    try:
        matrices = [load_matrix(m) for m in args.matrix]
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.ideas:
        table = ideas_table(matrices)
        if args.readme is not None:
            if splice_file(args.readme, table, (IDEAS_START, IDEAS_END)):
                print(f"updated the ideas table in {args.readme}")
        else:
            print(table)
        return 0
    if len(matrices) > 1:
        print("error: one matrix at a time (several only with --ideas)", file=sys.stderr)
        return 2
    write_report(matrices[0], args.out or matrices[0].out_dir / "report", args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())

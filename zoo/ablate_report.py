"""Tables, claim readings and pictures from an ablation matrix's run folders.

Everything here is computed from what the runs wrote (``summary.json``, ``metrics.jsonl``,
``config.json``) and from the models themselves (parameters, MACs, gradient norms at
initialisation): nothing is typed in. ``python -m zoo.ablate_report MATRIX`` writes
``results.json`` (the numbers the README's table is generated from), ``table.md`` and the
PNGs into the report folder.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ._builder import create_model, model_info
from .ablate import Matrix, Run, first_seed_runs, load_matrix, plan, summary_device
from .config import ConfigError
from .data import load_classification
from .engine.checkpoint import write_json
from .explain import attention_maps
from .viz import pyplot

METRIC = "top1"  # the classification headline, of the EMA weights (what is published)


@dataclass
class SeedResult:
    seed: int
    top1: float
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
        return [s.top1 for s in self.seeds]

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
    """A short sweep run's final top-1 of the raw weights: over a few epochs the EMA (decay
    0.998, a horizon of ~500 steps) still lags far behind them (at lr 0.01 for 3 epochs:
    22.83 against 70.74), so it would measure the EMA, not the learning rate."""

    row: str
    key: str
    value: Any
    top1: float | None  # None when the run diverged
    diverged: bool
    ema_top1: float | None = None


# -- reading run folders -----------------------------------------------------------------


def read_log(run_dir: Path) -> list[dict]:
    """metrics.jsonl as one run: where a resumed run logged a step again, the later record wins."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    keyed: dict[tuple, dict] = {}
    for r in records:
        keyed[(r.get("kind"), r.get("which"), r.get("step"), r.get("amp_bf16"), r.get("channels_last"))] = r
    return sorted(keyed.values(), key=lambda r: (r.get("step", -1), str(r.get("kind"))))


def seed_result(run: Run) -> SeedResult:
    summary, config = run.summary(), run.trained_config()
    speeds = [r["img_per_s"] for r in read_log(run.out_dir) if r.get("kind") == "train"]
    return SeedResult(
        seed=run.seed,
        top1=float(summary["final"][METRIC]),
        minutes=round(summary["train_wall_time_s"] / 60, 2),
        img_per_s=round(statistics.median(speeds), 1) if speeds else math.nan,
        threads=int(config["train"]["threads"]),
        precision="bf16" if config["train"]["amp_bf16"] else "fp32",
        device=summary_device(summary),
    )


def model_cost(model: str, args: dict) -> tuple[int, int]:
    """(parameters, MACs of one 1x28x28 image) of the row's model as trained."""
    net = create_model(model, in_chans=1, num_classes=10, **args)
    info = model_info(net, input_size=(1, 28, 28))
    return info["params"], int(info["macs"])


def collect(matrix: Matrix) -> tuple[list[RowResult], list[SweepResult]]:
    rows = {
        r.name: RowResult(r.name, r.group, r.model, dict(r.args), r.tag, *model_cost(r.model, r.args))
        for r in matrix.rows
    }
    sweeps = []
    for run in plan(matrix):
        state = run.state()
        if run.sweep:
            if state in ("done", "diverged"):
                top1 = ema = None
                if state == "done":
                    ema = seed_result(run).top1
                    raw = [
                        r
                        for r in read_log(run.out_dir)
                        if r.get("kind") == "eval" and r.get("which") == "model"
                    ]
                    top1 = raw[-1][METRIC]
                sweeps.append(
                    SweepResult(run.row.name, run.sweep, run.sweep_value, top1, state == "diverged", ema)
                )
        elif state == "done":
            rows[run.row.name].seeds.append(seed_result(run))
        elif state == "diverged":
            rows[run.row.name].diverged.append(run.seed)
    return list(rows.values()), sweeps


# -- claims --------------------------------------------------------------------------------


def compare(a: RowResult, b: RowResult) -> tuple[float, float, str]:
    """(mean of b - mean of a, its standard error, verdict). The difference counts when it is
    more than twice its standard error sqrt(s_a^2/n_a + s_b^2/n_b): 'higher' / 'lower', else
    'within noise'; with fewer than two seeds on either side there is no spread to judge by."""
    diff = b.mean - a.mean
    if len(a.seeds) < 2 or len(b.seeds) < 2:
        return diff, math.nan, "one seed: spread unknown"
    se = math.sqrt(a.std**2 / len(a.seeds) + b.std**2 / len(b.seeds))
    if abs(diff) > 2 * se:
        return diff, se, "higher" if diff > 0 else "lower"
    return diff, se, "within noise"


def _fmt_cmp(a: RowResult, b: RowResult) -> str:
    diff, se, verdict = compare(a, b)
    spread = f" ± {se:.2f}" if not math.isnan(se) else ""
    return f"`{b.name}` vs `{a.name}`: {diff:+.2f}{spread} points ({verdict})"


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
    rows: list[RowResult], sweeps: list[SweepResult], norms: dict[str, list[float]] | None = None
) -> list[str]:
    """One bullet per claim, built from the numbers; rows without results are left out."""
    by = {r.name: r for r in rows if r.seeds}
    lines = [gradient_reading(norms)] if norms else []

    def have(*names):
        return all(n in by for n in names)

    if have("resnet20_batchnorm"):
        base = by["resnet20_batchnorm"]
        norms = [
            _fmt_cmp(base, by[n])
            for n in ("resnet20_layernorm", "resnet20_groupnorm", "resnet20_nonorm")
            if n in by
        ]
        if norms:
            lines.append("**Normalization** (at the recipe's lr 0.1): " + "; ".join(norms) + ".")
    if sweeps:
        per_row: dict[str, list[str]] = {}
        for s in sweeps:
            per_row.setdefault(s.row, []).append(
                f"{s.value}: {'diverged' if s.diverged else f'{s.top1:.2f}'}"
            )
        lines.append(
            "**Learning rates** (one seed, short budget, top-1 of the raw weights): "
            + "; ".join(f"`{row}` " + ", ".join(v) for row, v in per_row.items())
            + "."
        )
    res = [
        _fmt_cmp(by[p], by[r])
        for p, r in (("plain20", "resnet20_batchnorm"), ("plain56", "resnet56"))
        if have(p, r)
    ]
    if have("plain20", "plain56"):
        res.append(f"degradation: {_fmt_cmp(by['plain20'], by['plain56'])}")
    if have("resnet20_batchnorm", "resnet56"):
        res.append(f"depth with shortcuts: {_fmt_cmp(by['resnet20_batchnorm'], by['resnet56'])}")
    if res:
        lines.append("**Residual connections**: " + "; ".join(res) + ".")
    if have("resnet20_batchnorm", "densenet_bc40"):
        d, r = by["densenet_bc40"], by["resnet20_batchnorm"]
        lines.append(
            f"**Dense connections**: {_fmt_cmp(r, d)} with {d.params / 1e3:.0f}K parameters against "
            f"{r.params / 1e3:.0f}K ({d.params / r.params:.2f}x) and {d.macs / r.macs:.2f}x the MACs."
        )
    att = [
        _fmt_cmp(by["resnet20_batchnorm"], by[n])
        for n in ("se_resnet20", "cbam_resnet20")
        if have("resnet20_batchnorm", n)
    ]
    if att:
        lines.append("**Attention**: " + "; ".join(att) + ".")
    failed = [f"`{r.name}` (seed {', '.join(map(str, r.diverged))})" for r in rows if r.diverged]
    if failed:
        lines.append(
            "**Diverged** (the loss went non-finite under the shared recipe): " + ", ".join(failed) + "."
        )
    vits = [r for r in by.values() if r.group == "self_attention"]
    if vits and "resnet20_batchnorm" in by:
        v = vits[0]
        lines.append(
            f"**Self-attention**: {_fmt_cmp(by['resnet20_batchnorm'], v)}, with {v.params / 1e6:.2f}M "
            f"parameters against {by['resnet20_batchnorm'].params / 1e6:.2f}M."
        )
    return lines


# -- table -------------------------------------------------------------------------------


def _pm(r: RowResult) -> str:
    diverged = f"diverged (seed {', '.join(map(str, r.diverged))})" if r.diverged else ""
    if not r.seeds:
        return diverged or "not run yet"
    value = f"{r.mean:.2f} (1 seed)" if len(r.seeds) == 1 else f"{r.mean:.2f} ± {r.std:.2f}"
    return f"{value}; {diverged}" if diverged else value


def render_table(rows: list[RowResult]) -> str:
    lines = [
        "| idea | row | model | top-1 % (mean ± std) | seeds | params | MACs | train img/s (CPU) "
        "| minutes (CPU) |",
        "|---|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        seeds = ", ".join(f"{s.top1:.2f}{s.where}" for s in r.seeds) or "-"
        ips = "-" if math.isnan(r.cpu_img_per_s) else f"{r.cpu_img_per_s:.0f}"
        mins = "-" if math.isnan(r.cpu_minutes) else f"{r.cpu_minutes:.1f}"
        args = "".join(f", {k}={v}" for k, v in r.args.items())
        lines.append(
            f"| {r.group} | `{r.name}` | `{r.model}`{args} | {_pm(r)} | {seeds} | {r.params / 1e3:.0f}K "
            f"| {r.macs / 1e6:.1f}M | {ips} | {mins} |"
        )
    return "\n".join(lines)


def render_markdown(
    rows: list[RowResult], sweeps: list[SweepResult], norms: dict[str, list[float]] | None = None
) -> str:
    readings = "\n".join(f"- {line}" for line in claim_readings(rows, sweeps, norms))
    return render_table(rows) + ("\n\n" + readings if readings else "")


# -- pictures ----------------------------------------------------------------------------


def epoch_curves(run_dir: Path) -> tuple[list[int], list[float], list[float]]:
    """(epochs, mean training loss of the epoch, test top-1 of the raw weights after it)."""
    log = read_log(run_dir)
    losses: dict[int, list[float]] = {}
    for r in log:
        if r.get("kind") == "train":
            losses.setdefault(r["epoch"], []).append(r["loss"])
    acc = {r["epoch"]: r[METRIC] for r in log if r.get("kind") == "eval" and r.get("which") == "model"}
    epochs = sorted(set(losses) & set(acc))
    return [e + 1 for e in epochs], [statistics.fmean(losses[e]) for e in epochs], [acc[e] for e in epochs]


def plot_groups(matrix: Matrix, rows: list[RowResult], out: Path) -> list[Path]:
    """Per group: test error and training loss against epochs, seed 0 of each row (He et al. Fig. 6)."""
    plt = pyplot()
    paths = []
    first = {r.row.name: r for r in first_seed_runs(matrix)}
    groups = {
        "residual": ["plain20", "resnet20_batchnorm", "plain56", "resnet56"],
        "normalization": [r.name for r in rows if r.group == "normalization"],
        "attention": ["resnet20_batchnorm", *[r.name for r in rows if r.group == "attention"]],
        "dense_and_self_attention": [
            "resnet20_batchnorm",
            *[r.name for r in rows if r.group in ("dense", "self_attention")],
        ],
    }
    for group, names in groups.items():
        fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 3.8))
        drawn = 0
        for name in names:
            if name not in first or first[name].state() != "done":  # finished runs only
                continue
            epochs, loss, acc = epoch_curves(first[name].out_dir)
            if not epochs:
                continue
            style = "--" if name.startswith("plain") else "-"
            ax_loss.plot(epochs, loss, style, label=name)
            ax_err.plot(epochs, [100 - a for a in acc], style, label=name)
            drawn += 1
        if drawn:
            ax_loss.set(
                xlabel="epoch", ylabel="training loss (label-smoothed)", title=f"{group}: training loss"
            )
            ax_err.set(
                xlabel="epoch", ylabel="test error %", title=f"{group}: test error (seed {matrix.seeds[0]})"
            )
            ax_err.set_ylim(bottom=max(0, ax_err.get_ylim()[0]))
            ax_err.legend(fontsize=8)
            fig.tight_layout()
            path = out / f"curves_{group}.png"
            fig.savefig(path, dpi=110)
            paths.append(path)
        plt.close(fig)
    return paths


def plot_cost(rows: list[RowResult], out: Path) -> list[Path]:
    """Top-1 against parameters and against training minutes, one point per row (mean ± std;
    the minutes of the CPU-trained seeds, and rows without one left out of that panel)."""
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
        ax.set(xlabel=xlabel, ylabel="test top-1 %")
        if log:
            _log_axis_in_thousands(ax, xs)
    fig.suptitle("Fashion-MNIST, one recipe: accuracy against cost")
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


def plot_sweep(sweeps: list[SweepResult], out: Path) -> list[Path]:
    plt = pyplot()
    if not sweeps:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in dict.fromkeys(s.row for s in sweeps):
        pts = sorted((s for s in sweeps if s.row == row), key=lambda s: float(s.value))
        xs = [float(s.value) for s in pts]
        ys = [s.top1 if not s.diverged else math.nan for s in pts]
        (line,) = ax.plot(xs, ys, "o-", label=row)
        for s in pts:
            if s.diverged:
                ax.plot(float(s.value), 10, "x", color=line.get_color(), markersize=10)
    ax.set(
        xscale="log",
        xlabel=f"{sweeps[0].key} (peak)",
        ylabel="test top-1 %, raw weights (x: diverged)",
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
    data = load_classification("fashion_mnist", "test")
    x = data.images[:n].float() / 255
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    return (x - mean) / std, data.labels[:n]


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


def plot_cbam(weights_file: Path, args: dict, out: Path, n: int = 6) -> list[Path]:
    """Test images with the spatial attention of the last CBAM module of each stage
    (``zoo.explain.attention_maps``, the maps ``zoo explain`` draws)."""
    plt = pyplot()
    model = create_model("cbam_resnet20", in_chans=1, num_classes=10, **args)
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


START, END = "<!-- concept-table:start -->", "<!-- concept-table:end -->"


def splice(text: str, block: str, where: str = "README") -> str:
    """``text`` with what lies between the concept-table markers replaced by ``block``."""
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise ValueError(f"{where} needs the markers {START} and {END} (in that order)")
    head, rest = text.split(START, 1)
    return f"{head}{START}\n{block}\n{END}{rest.split(END, 1)[1]}"


def initial_gradient_norms() -> dict[str, list[float]]:
    """plain56 against resnet56 as initialised and with its branches' last BN scale at 1."""
    batch = test_batch()
    return {
        "plain56": gradient_norms("plain56", batch),
        "resnet56": gradient_norms("resnet56", batch),
        "resnet56, last BN scale 1": gradient_norms("resnet56", batch, unit_last_bn=True),
    }


def write_report(matrix: Matrix, out: Path, readme: Path | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    rows, sweeps = collect(matrix)
    pictures = plot_groups(matrix, rows, out) + plot_cost(rows, out) + plot_sweep(sweeps, out)
    norms = initial_gradient_norms()
    pictures += plot_gradients(norms, out)
    cbam = next((r for r in first_seed_runs(matrix) if r.row.model == "cbam_resnet20"), None)
    if cbam is not None and (cbam.out_dir / "model.safetensors").is_file():
        pictures += plot_cbam(cbam.out_dir / "model.safetensors", cbam.row.args, out)
    results = {
        "matrix": str(matrix.path),
        "rows": [asdict(r) | {"mean": r.mean, "std": r.std} for r in rows],
        "sweeps": [asdict(s) for s in sweeps],
        "gradient_norms": norms,
    }
    results = _no_nan(results)
    write_json(results, out / "results.json")
    markdown = render_markdown(rows, sweeps, norms)
    (out / "table.md").write_text(markdown + "\n", encoding="utf-8")
    if readme is not None:
        text = readme.read_text(encoding="utf-8")
        new = splice(text, markdown, str(readme))
        if new != text:
            readme.write_text(new, encoding="utf-8")
            print(f"updated the concept table in {readme}")
    for p in pictures:
        print(f"wrote {p}")
    print(f"wrote {out / 'results.json'} and {out / 'table.md'}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.ablate_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("matrix", help="the matrix file the runs were made from")
    parser.add_argument(
        "--out", type=Path, help="folder for the pictures and tables (default: <out_dir>/report)"
    )
    parser.add_argument(
        "--readme", type=Path, help="also rewrite the table between the concept-table markers here"
    )
    args = parser.parse_args(argv)
    try:
        matrix = load_matrix(args.matrix)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_report(matrix, args.out or matrix.out_dir / "report", args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run an ablation matrix: every (row, seed) of a matrix file, resumable at any point.

    python -m zoo.ablate run configs/fashion_mnist/concept/matrix.yaml      # start or continue
    python -m zoo.ablate status configs/fashion_mnist/concept/matrix.yaml   # what is done
    python -m zoo.ablate publish configs/fashion_mnist/concept/matrix.yaml --hardware "..."
    python -m zoo.ablate_report configs/fashion_mnist/concept/matrix.yaml   # tables and pictures

A matrix file names one shared recipe and the rows that differ from it only in the model
(architecture and ``create_model`` arguments), the seeds, and optional sweeps (one config
key at several values for some rows, one seed, usually a shorter budget). It also says what
the report reads from the runs, for any task and dataset: ``metric`` (the number a row is
judged by, a key of the runs' final evaluation; default: the task's primary metric),
``claims`` (titled lists of row-against-row comparisons, each optionally named as an ``idea``
for the table that sets one dataset's verdicts beside another's), ``curves`` (which rows'
training curves share a picture) and ``extras`` (pictures that apply to some matrices only). Every run has its
own folder ``<out_dir>/<row>/seed<k>`` (``<out_dir>/sweep_<name>/<row>/<key>=<value>`` for
sweeps). ``run`` works through them in order, seed-major (every row's first seed before any
second seed), and for each one:

- a finished run (``summary.json``) or a diverged one (``diverged.json``: the loss went
  non-finite; that is a result of a learning-rate sweep, not an error) is skipped;
- an interrupted run (``last.ckpt`` without a summary) resumes from its checkpoint, which
  continues exactly where it stopped (the trainer's resume contract);
- anything else starts from scratch.

So it can be killed and restarted at any time without redoing or losing finished work.
The run folders' small files (config, metrics log, summary) are the results the report is
built from; checkpoints and weights stay out of git (the seed-0 weights are published to
the manifest instead).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from safetensors import safe_open

from .config import ConfigError, RunConfig, load_config
from .data import dataset_info
from .data.integrity import file_sha256
from .engine import NonFiniteLossError, RunInterrupted, train
from .engine.autotune import candidates, fastest, time_settings
from .engine.checkpoint import model_from_config, save_weights, write_json
from .engine.distributed import resolve_device
from .engine.evaluator import evaluate_run
from .engine.run_folder import CHECKPOINT, CONFIG, DIVERGED, RUNNER_LOCK, SUMMARY, WEIGHTS, RunLock, read_json
from .engine.tasks import get_task
from .weights import (
    BackboneSource,
    Provenance,
    SeedSpread,
    WeightsEntry,
    add_entry,
    backbone_source,
    load_manifest,
    parse_safetensors,
)


@dataclass(frozen=True)
class Row:
    name: str  # run folder name, unique in the matrix
    group: str  # the claim the row tests: normalization, residual, attention, ...
    model: str  # registered architecture
    args: dict[str, Any] = field(default_factory=dict)  # create_model kwargs beyond the recipe's
    tag: str = ""  # the published weights' tag (arch.tag); empty: not published


@dataclass(frozen=True)
class Sweep:
    name: str
    rows: list[str]
    key: str  # a config key, e.g. optim.lr
    values: list[Any]
    seed: int = 0
    overrides: list[str] = field(default_factory=list)  # e.g. a shorter schedule.epochs


@dataclass(frozen=True)
class Comparison:
    base: str  # the row compared against
    row: str
    label: str = ""  # words put before the difference in the reading, e.g. "degradation"
    idea: str = ""  # its row in the idea x dataset table ("" leaves it out)


@dataclass(frozen=True)
class Claim:
    title: str  # e.g. "Normalization"
    compare: list[Comparison]
    note: str = ""  # said after the title, in parentheses


EXTRAS = ("gradient_norms", "cbam_attention", "explain", "per_class")  # pictures a matrix may ask for


@dataclass(frozen=True)
class Matrix:
    path: Path
    recipe: Path
    out_dir: Path
    seeds: list[int]
    rows: list[Row]
    sweeps: list[Sweep]
    metric: str = "top1"  # a key of each run's final evaluation (summary.json)
    title: str = ""  # how the report names the dataset, e.g. "Fashion-MNIST"
    claims: list[Claim] = field(default_factory=list)
    curves: dict[str, list[str]] = field(default_factory=dict)  # picture name -> rows drawn in it
    extras: list[str] = field(default_factory=list)
    license: str = "mit"  # of the published weights (the data's terms may restrict it)

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)


@dataclass(frozen=True)
class MatrixRun:
    """One (row, seed) of a matrix, or one value of a sweep: its folder and the overrides it
    trains with. (The trainer's ``Run`` is the live state of a run being trained.)"""

    row: Row
    seed: int
    out_dir: Path
    overrides: tuple[str, ...]  # beyond the recipe: model, seed, out_dir, sweep value
    sweep: str = ""  # the sweep's name; "" for a matrix run
    sweep_value: Any = None

    @property
    def label(self) -> str:
        return f"{self.row.name} seed {self.seed}" + (
            f" {self.sweep}={self.sweep_value}" if self.sweep else ""
        )

    def state(self) -> str:
        """done | diverged | interrupted | new"""
        if (self.out_dir / SUMMARY).is_file():
            return "done"
        if (self.out_dir / DIVERGED).is_file():
            return "diverged"
        if (self.out_dir / CHECKPOINT).is_file():
            return "interrupted"
        return "new"

    def config(self, matrix: Matrix) -> RunConfig:
        return load_config(matrix.recipe, list(self.overrides))

    def summary(self) -> dict[str, Any]:
        """What the trainer wrote at the end: final metrics, steps, wall time."""
        return read_json(self.out_dir, SUMMARY)

    def trained_config(self) -> dict[str, Any]:
        """The resolved config the run trained with (``auto`` settings as chosen)."""
        return read_json(self.out_dir, CONFIG)


def _fields(cls, data: Any, where: str) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; expected some of {sorted(known)}")
    return data


def load_matrix(path: str | Path) -> Matrix:
    """Read and check a matrix file; paths in it are relative to the file (recipe) and to the
    working directory (out_dir, like train.out_dir)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"matrix file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    data = _fields(Matrix, data, str(path))
    for key in ("recipe", "out_dir", "rows"):
        if key not in data:
            raise ConfigError(f"{path}: missing key {key!r}")
    rows = [Row(**_fields(Row, r, f"{path}: rows[{i}]")) for i, r in enumerate(data["rows"])]
    names = [r.name for r in rows]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: row names must be unique, repeated: {dupes}")
    sweeps = [
        Sweep(**_fields(Sweep, s, f"{path}: sweeps[{i}]")) for i, s in enumerate(data.get("sweeps") or [])
    ]
    for s in sweeps:
        missing = [r for r in s.rows if r not in names]
        if missing:
            raise ConfigError(f"{path}: sweep {s.name!r} names unknown rows {missing}; rows are {names}")
    seeds = data.get("seeds", [0])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{path}: seeds must be a non-empty list of ints, got {seeds!r}")
    claims = [_claim(c, f"{path}: claims[{i}]", names) for i, c in enumerate(data.get("claims") or [])]
    curves = data.get("curves") or {}
    if not isinstance(curves, dict):
        raise ConfigError(f"{path}: curves must map a picture name to a list of rows, got {curves!r}")
    for picture, members in curves.items():
        _known_rows(members, f"{path}: curves.{picture}", names)
    extras = list(data.get("extras") or [])
    unknown = sorted(set(extras) - set(EXTRAS))
    if unknown:
        raise ConfigError(f"{path}: unknown extras {unknown}; known: {list(EXTRAS)}")
    recipe = path.parent / data["recipe"]
    metric = data.get("metric") or get_task(load_config(recipe).task).primary_metric
    return Matrix(
        path,
        recipe,
        Path(data["out_dir"]),
        list(seeds),
        rows,
        sweeps,
        metric=metric,
        title=data.get("title", ""),
        claims=claims,
        curves={k: list(v) for k, v in curves.items()},
        extras=extras,
        license=data.get("license", "mit"),
    )


def _known_rows(members: Any, where: str, names: list[str]) -> list[str]:
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise ConfigError(f"{where}: expected a list of row names, got {members!r}")
    missing = [m for m in members if m not in names]
    if missing:
        raise ConfigError(f"{where} names unknown rows {missing}; rows are {names}")
    return members


def _claim(data: Any, where: str, names: list[str]) -> Claim:
    data = dict(_fields(Claim, data, where))
    if "title" not in data or "compare" not in data:
        raise ConfigError(f"{where}: a claim needs a title and a compare list")
    compare = []
    for i, c in enumerate(data.pop("compare") or []):
        c = Comparison(**_fields(Comparison, c, f"{where}.compare[{i}]"))
        _known_rows([c.base, c.row], f"{where}.compare[{i}]", names)
        compare.append(c)
    return Claim(compare=compare, **data)


def _row_overrides(row: Row) -> list[str]:
    out = [f"model.name={row.model}"]
    return out + [f"model.args.{k}={json.dumps(v)}" for k, v in row.args.items()]  # JSON is YAML


def plan(matrix: Matrix) -> list[MatrixRun]:
    """Every run of the matrix in the order ``run`` takes them: the first seed of every row,
    then the sweeps, then the further seeds."""

    def matrix_run(row: Row, seed: int) -> MatrixRun:
        out = matrix.out_dir / row.name / f"seed{seed}"
        ov = [*_row_overrides(row), f"train.seed={seed}", f"train.out_dir={out}"]
        return MatrixRun(row, seed, out, tuple(ov))

    first, *rest = matrix.seeds
    runs = [matrix_run(r, first) for r in matrix.rows]
    for s in matrix.sweeps:
        for name in s.rows:
            row = matrix.row(name)
            for value in s.values:
                out = matrix.out_dir / f"sweep_{s.name}" / row.name / f"{s.key.rsplit('.', 1)[-1]}={value}"
                ov = [
                    *_row_overrides(row),
                    *s.overrides,
                    f"{s.key}={value}",
                    f"train.seed={s.seed}",
                    f"train.out_dir={out}",
                ]
                runs.append(MatrixRun(row, s.seed, out, tuple(ov), s.name, value))
    runs += [matrix_run(r, seed) for seed in rest for r in matrix.rows]
    return runs


def first_seed_runs(matrix: Matrix) -> list[MatrixRun]:
    """Each row's run with the matrix's first seed (the one whose weights are published)."""
    return [r for r in plan(matrix) if not r.sweep and r.seed == matrix.seeds[0]]


def finished_seeds(matrix: Matrix, row: Row) -> list[MatrixRun]:
    """The row's matrix runs (not sweeps) that have finished, in seed order."""
    return [r for r in plan(matrix) if r.row is row and not r.sweep and r.state() == "done"]


def select(runs: list[MatrixRun], only: str | list[str] | None) -> list[MatrixRun]:
    """Runs whose label or row name matches one of the fnmatch patterns (all when None), in
    plan order."""
    if not only:
        return runs
    patterns = [only] if isinstance(only, str) else only
    return [
        r
        for r in runs
        if any(fnmatch.fnmatch(r.row.name, p) or fnmatch.fnmatch(r.label, p) for p in patterns)
    ]


def execute(run: MatrixRun, matrix: Matrix, extra: list[str] = ()) -> str:
    """Train one run to its end (resuming if it was interrupted); return its final state."""
    cfg = load_config(matrix.recipe, [*run.overrides, *extra])
    resume = run.state() == "interrupted"
    print(f"== {run.label}: {'resuming' if resume else 'starting'} in {run.out_dir}", flush=True)
    try:
        train(cfg, resume=resume)
    except NonFiniteLossError as err:
        write_json({"diverged": True, "message": str(err)}, run.out_dir / DIVERGED)
        print(f"== {run.label}: diverged ({err})", flush=True)
    return run.state()


@contextmanager
def claim(run: MatrixRun):
    """Yield True if this process may train ``run``: no other runner holds its lock. Two
    runners (one per core, say) can then work through one matrix side by side. The lock is
    an OS file lock (``flock``), so it is taken atomically and dies with its process: a killed
    runner never blocks the next one. (Its own file: the trainer takes the folder's train lock
    itself, inside the claim.)"""
    run.out_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run.out_dir, RUNNER_LOCK)
    if not lock.try_acquire():
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def run_matrix(
    matrix: Matrix, only: str | list[str] | None = None, until: float | None = None, extra: list[str] = ()
) -> list[str]:
    """Work through every unfinished run; return the labels of those that failed. ``until``
    (a time.time()) stops before starting a run that would not finish by then, judged by the
    same row's earlier runs, if any. A run that fails (a bad config, a folder another process
    holds, a data error) is reported and the matrix goes on: one bad row must not stop an
    unattended night of training."""
    failed = []
    for run in select(plan(matrix), only):
        if run.state() in ("done", "diverged"):
            continue
        if until is not None:
            estimate = _estimate_seconds(run, matrix)
            if time.time() + estimate > until:
                print(f"== {run.label}: not started, would end after --until (about {estimate / 60:.0f} min)")
                continue
        with claim(run) as mine:
            if not mine:
                print(f"== {run.label}: another runner is training it; skipped")
                continue
            if run.state() in ("done", "diverged"):  # finished while we waited for the lock
                continue
            try:
                execute(run, matrix, extra)
            except Exception as err:  # noqa: BLE001 (reported, and the exit status says so)
                print(f"== {run.label}: FAILED: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
                failed.append(run.label)
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
    return failed


def summary_device(summary: dict[str, Any]) -> str:
    """Where a finished run trained, from its summary: summaries name their device since
    2026-11-26, and every run before that trained on a CPU."""
    return summary.get("device", "cpu")


def _estimate_seconds(run: MatrixRun, matrix: Matrix) -> float:
    """Training time of the same row's finished CPU runs (0 when none has finished): a seed
    trained on a GPU says nothing of how long one takes here."""
    summaries = [r.summary() for r in finished_seeds(matrix, run.row)]
    times = [s["train_wall_time_s"] for s in summaries if summary_device(s) == "cpu"]
    return max(times) if times and not run.sweep else 0.0


def training_command(matrix: Matrix, run: MatrixRun) -> str:
    """The one ``train.py`` command that trains ``run`` on its own, into a fresh folder under
    ``runs/`` (the run's own folder holds its committed results, and the trainer refuses to
    start over a finished run; the folder changes nothing it computes)."""
    fresh = (
        Path("runs") / run.out_dir.relative_to(matrix.out_dir.parent)
        if not run.out_dir.is_absolute()
        else run.out_dir
    )
    overrides = [o if not o.startswith("train.out_dir=") else f"train.out_dir={fresh}" for o in run.overrides]
    return " ".join(["python train.py", str(matrix.recipe), *(shlex.quote(o) for o in overrides)])


def publish(
    matrix: Matrix,
    hardware: str,
    manifest: Path | None = None,
    weights_folder: Path | None = None,
    replace: bool = False,
    tolerance: float = 0.05,
    git_commit: str | None = None,
    dtype: str = "float32",
) -> list[str]:
    """Add each tagged row's first-seed weights to the manifest as ``<model>.<tag>``, with the
    task's metrics re-measured from the file (the matrix's metric must agree with the run's own
    final evaluation within ``tolerance`` points, a hundredth of that for mAP fractions) and its
    spread over every finished seed. ``dtype="float16"`` publishes a float16 copy of the file
    (half the bytes in git; it loads into float32 models), and the metrics are those of the
    copy. Rows whose first seed has
    not finished, or whose weights file is gone, are skipped and named."""
    known = {e.name: e for e in load_manifest(manifest)}
    added = []
    for run in first_seed_runs(matrix):
        if not run.row.tag:
            continue
        name, weights = f"{run.row.model}.{run.row.tag}", run.out_dir / WEIGHTS
        if name in known and not replace:
            continue
        if run.state() != "done" or not weights.is_file():
            print(
                f"skip {name}: {run.label} is {run.state()}"
                + ("" if weights.is_file() else ", no weights file")
            )
            continue
        if dtype == "float16":
            weights = half_precision_copy(weights)
        summary = run.summary()
        trained = run.trained_config()["train"]
        setting = (
            f"{'bf16 autocast' if trained['amp_bf16'] else 'float32'} + "
            f"{'channels_last' if trained['channels_last'] else 'NCHW'}"
        )
        ev = evaluate_run(run.row.model, weights)
        height, width = ev.info.input_size  # the images the run trained on, not the registry's default
        measured = {k: float(ev.result[k]) for k in ev.task.published_metrics}
        m = matrix.metric
        if abs(measured[m] - summary["final"][m]) > tolerance * ev.task.metric_scale:
            raise RuntimeError(
                f"{weights}: re-measured {m} {measured[m]} differs from the run's {summary['final'][m]}"
            )
        seeds = {str(r.seed): r.summary()["final"][m] for r in finished_seeds(matrix, run.row)}
        # Republishing the same file (to add seeds) keeps where and at which commit it was trained.
        prior = known.get(name)
        if prior is not None and prior.sha256 == file_sha256(weights):
            trained_at, trained_on = prior.provenance.git_commit, prior.provenance.hardware
        else:
            device = summary_device(summary)
            where = hardware if device == "cpu" else f"{hardware}; trained on {device}"
            trained_at, trained_on = git_commit, f"{where}; {setting}"
        entry = add_entry(
            name,
            weights,
            dataset=ev.result["dataset"],
            split=ev.result["split"],
            metrics=measured,
            mean=list(ev.info.mean),
            input_size=[height, width] if height and width else None,
            std=list(ev.info.std),
            label_names=list(ev.info.classes),
            fit=dataset_info(ev.result["dataset"]).fit,  # how the dataset's images were made
            license=matrix.license,
            model_args={k: v for k, v in run.row.args.items() if k != "backbone_weights"},
            provenance=Provenance(
                config=str(matrix.recipe),
                command=training_command(matrix, run),
                eval_command=f"python eval.py {name}",
                train_wall_time_s=summary["train_wall_time_s"],
                hardware=trained_on,
                git_commit=trained_at or "",  # "": the HEAD of the manifest's repository
                seeds=SeedSpread.of(m, seeds),
                # as the run recorded them when it loaded them (the manifest may have moved on since)
                backbone_weights=_backbone_source(summary, run.row.args.get("backbone_weights"), known),
            ),
            replace=name in known,
            manifest=manifest,
            weights_folder=weights_folder,
        )
        added.append(entry.name)
        print(f"published {entry.name}: {m} {measured[m]} (seeds {seeds})")
    return added


def _backbone_source(
    summary: dict[str, Any], name: str | None, known: dict[str, WeightsEntry]
) -> BackboneSource | None:
    """The backbone weights a run started from: the name and sha256 its summary recorded, else
    (a run from before summaries recorded them) the name, looked up in the manifest."""
    recorded = summary.get("backbone_weights")
    if recorded:
        return BackboneSource(recorded["name"], recorded["sha256"])
    return backbone_source(name, list(known.values())) if name else None


def half_precision_copy(weights: Path) -> Path:
    """``model.float16.safetensors`` beside ``weights``: its floating-point tensors in float16,
    the rest and the metadata unchanged (rewritten only when the source is newer)."""
    out = weights.with_name(weights.stem + ".float16.safetensors")
    if out.is_file() and out.stat().st_mtime >= weights.stat().st_mtime:
        return out
    data = weights.read_bytes()
    state = parse_safetensors(data, weights)
    with safe_open(weights, "pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_weights(half, out, meta)
    return out


def measure_speed(matrix: Matrix, steps: int = 5) -> list[dict[str, Any]]:
    """Forward + backward img/s of each row's model on one real training batch, for every
    precision / memory format ``auto`` would try (the trainer's own probe): what a row costs
    before any of it is trained, to size a recipe."""
    rows = []
    for run in first_seed_runs(matrix):
        cfg = run.config(matrix)
        task = get_task(cfg.task)
        loader, _, info = task.build_loaders(cfg)
        batch = next(iter(loader.batches(0, 0)))
        model = model_from_config(cfg, info, load_backbone=False)  # the cost, not the weights
        settings = candidates(cfg.train.amp_bf16, cfg.train.channels_last)
        trials = time_settings(
            model, batch, task, cfg, resolve_device(cfg.train.device), settings, steps=steps
        )
        size = task.batch_size(batch)
        rows.append(
            {
                "row": run.row.name,
                "params": sum(p.numel() for p in model.parameters()),
                "img_per_s": {t.label: round(size / t.seconds, 1) for t in trials},
                "fastest": fastest(trials).label,
            }
        )
        print(
            f"{run.row.name:<24} " + "  ".join(f"{t.label}: {size / t.seconds:6.0f}" for t in trials),
            flush=True,
        )
    return rows


def print_status(matrix: Matrix) -> None:
    runs = plan(matrix)
    for run in runs:
        print(f"{run.state():<12} {run.label}")
    counts = {s: sum(r.state() == s for r in runs) for s in ("done", "diverged", "interrupted", "new")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()))


def _parse_until(text: str) -> float:
    """'HH:MM' today (local time) -> a time.time() value."""
    try:
        hh, mm = (int(x) for x in text.split(":"))
        now = time.localtime()
        return time.mktime((now.tm_year, now.tm_mon, now.tm_mday, hh, mm, 0, 0, 0, -1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--until expects HH:MM, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zoo.ablate",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train every unfinished run, resuming interrupted ones")
    run.add_argument("matrix")
    run.add_argument(
        "--only",
        action="append",
        help="fnmatch pattern on row names or run labels, e.g. 'resnet20_*' or '* seed 0' (repeatable: any)",
    )
    run.add_argument("--until", type=_parse_until, help="HH:MM: start no run that would end later")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="key=value",
        help="extra overrides for every run that do not change results (e.g. train.threads=1)",
    )
    status = commands.add_parser("status", help="list every run and its state")
    status.add_argument("matrix")
    speed = commands.add_parser("speed", help="time each row's forward + backward (img/s) before training")
    speed.add_argument("matrix")
    speed.add_argument("--steps", type=int, default=5, help="timed steps per setting (after one warm-up)")
    pub = commands.add_parser("publish", help="add each tagged row's first-seed weights to the manifest")
    pub.add_argument("matrix")
    pub.add_argument("--hardware", required=True, help="what trained them, for the manifest")
    pub.add_argument("--manifest", type=Path, help="the manifest to edit (default: the checkout's)")
    pub.add_argument(
        "--weights-folder", type=Path, help="where the files go (default: the checkout's weights/)"
    )
    pub.add_argument(
        "--replace", action="store_true", help="update entries that exist (e.g. with more seeds)"
    )
    pub.add_argument("--git-commit", help="the commit the runs trained at (default: HEAD)")
    pub.add_argument(
        "--dtype",
        choices=["float32", "float16"],
        default="float32",
        help="store the weights in float16 (half the bytes; the metrics are re-measured on the copy)",
    )
    args = parser.parse_args(argv)
    try:
        matrix = load_matrix(args.matrix)
        if args.command == "run":
            if run_matrix(matrix, args.only, args.until, args.set):
                return 1
        elif args.command == "speed":
            measure_speed(matrix, args.steps)
        elif args.command == "publish":
            publish(
                matrix,
                args.hardware,
                args.manifest,
                args.weights_folder,
                args.replace,
                git_commit=args.git_commit,
                dtype=args.dtype,
            )
        else:
            print_status(matrix)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RunInterrupted as stop:  # Ctrl-C or SIGTERM: the run in progress is checkpointed
        again = shlex.join(["python", "-m", "zoo.ablate", *(sys.argv[1:] if argv is None else argv)])
        print(f"{stop}; the matrix continues (and this run resumes) with: {again}", file=sys.stderr)
        return stop.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())

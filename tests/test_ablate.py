"""The ablation runner on a tiny matrix, and the report built from recorded results."""

import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import zoo
import zoo.ablate as ablate_module
from zoo.ablate import (
    Claim,
    Comparison,
    claim,
    load_matrix,
    main,
    measure_speed,
    plan,
    publish,
    run_matrix,
    select,
)
from zoo.ablate_report import (
    IDEAS_END,
    IDEAS_START,
    RowResult,
    SeedResult,
    _log_axis_in_thousands,
    claim_readings,
    collect,
    compare,
    ideas_table,
    initial_gradient_norms,
    markers,
    matrix_markdown,
    per_class_differences,
    plot_cbam,
    plot_cost,
    plot_per_class,
    render_table,
    splice,
    write_report,
)
from zoo.config import ConfigError, load_config
from zoo.engine import train
from zoo.engine.run_folder import RUNNER_LOCK, read_metrics
from zoo.weights import load_manifest

from .conftest import REPO

TINY = {
    "_base_": str(REPO / "configs/fashion_mnist/concept/recipe.yaml"),
    "data": {"train_split": "test", "batch_size": 32},  # the shipped split: always present
    "schedule": {"epochs": 1, "warmup_epochs": 0},
    "train": {
        "max_steps": 4,
        "ckpt_every_steps": 2,
        "ema": False,
        "amp_bf16": False,
        "channels_last": False,
        "deterministic": True,
        "log_every_steps": 1,
        "eval_every_epochs": 1,
    },
}


def _matrix(tmp_path: Path, **extra) -> Path:
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(TINY))
    spec = {
        "recipe": "recipe.yaml",
        "out_dir": str(tmp_path / "runs"),
        "seeds": [0, 1],
        "rows": [
            {"name": "base", "group": "normalization", "model": "resnet20", "tag": "t"},
            {
                "name": "layernorm",
                "group": "normalization",
                "model": "resnet20",
                "args": {"norm": "layernorm"},
            },
        ],
        **extra,
    }
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


HOLD_LOCK = """
import fcntl, sys, time
f = open(sys.argv[1], "a+")
fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(60)
"""


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_plan_is_seed_major_with_sweeps_after_the_first_seed(tmp_path):
    sweeps = [
        {
            "name": "lr",
            "rows": ["layernorm"],
            "key": "optim.lr",
            "values": [0.01, 0.1],
            "overrides": ["schedule.epochs=1"],
        }
    ]
    m = load_matrix(_matrix(tmp_path, sweeps=sweeps))
    labels = [r.label for r in plan(m)]
    assert labels == [
        "base seed 0",
        "layernorm seed 0",
        "layernorm seed 0 lr=0.01",
        "layernorm seed 0 lr=0.1",
        "base seed 1",
        "layernorm seed 1",
    ]
    assert [r.label for r in select(plan(m), ["* seed 1", "*lr=0.1"])] == [
        "layernorm seed 0 lr=0.1",
        "base seed 1",
        "layernorm seed 1",
    ]
    cfg = plan(m)[3].config(m)
    assert (cfg.optim.lr, cfg.model.args["norm"], cfg.model.args["in_chans"]) == (0.1, "layernorm", 1)


def test_bad_matrix_files_name_the_problem(tmp_path):
    path = _matrix(tmp_path, sweeps=[{"name": "lr", "rows": ["nope"], "key": "optim.lr", "values": [1]}])
    with pytest.raises(ConfigError, match="unknown rows.*nope"):
        load_matrix(path)
    path.write_text(
        yaml.safe_dump({"recipe": "r.yaml", "out_dir": "x", "rows": [{"name": "a", "modle": "x"}]})
    )
    with pytest.raises(ConfigError, match=r"rows\[0\].*modle"):
        load_matrix(path)
    assert main(["status", str(tmp_path / "missing.yaml")]) == 2


def test_runner_skips_finished_resumes_interrupted_a_rerun_changes_nothing_and_publishes(
    tmp_path, capsys, monkeypatch
):
    m = load_matrix(_matrix(tmp_path))
    runs = plan(m)
    run_matrix(m, only="base")  # both seeds of one row
    assert [r.state() for r in runs] == ["done", "new", "done", "new"]

    # Interrupt layernorm seed 0 after its step-2 checkpoint: a checkpoint without a summary.
    interrupted = runs[1]
    train(load_config(m.recipe, [*interrupted.overrides, "train.max_steps=2"]))
    for name in ("summary.json", "model.safetensors"):
        (interrupted.out_dir / name).unlink()
    assert interrupted.state() == "interrupted"

    capsys.readouterr()
    run_matrix(m)
    out = capsys.readouterr().out
    assert "layernorm seed 0: resuming" in out and "at step 2" in out
    assert "base seed" not in out  # finished runs are not touched
    assert all(r.state() == "done" for r in runs)
    assert json.loads((interrupted.out_dir / "summary.json").read_text())["step"] == 4
    steps = [r["step"] for r in read_metrics(interrupted.out_dir) if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4]  # the resumed log reads as one run

    before = _snapshot(tmp_path / "runs")
    run_matrix(m)
    assert _snapshot(tmp_path / "runs") == before

    rows, _ = collect(m)
    assert [len(r.seeds) for r in rows] == [2, 2]
    summary = json.loads((runs[2].out_dir / "summary.json").read_text())
    assert rows[0].seeds[1].value == summary["final"]["top1"]

    # Publishing: the tagged row's first seed, re-measured, with the spread over both seeds.
    manifest, folder = tmp_path / "manifest.json", tmp_path / "weights"
    manifest.write_text("[]")
    assert publish(m, "a test machine", manifest, folder) == ["resnet20.t"]
    (entry,) = load_manifest(manifest)
    assert entry.metrics["top1"] == rows[0].seeds[0].value
    assert entry.provenance.seeds.values == {"0": rows[0].seeds[0].value, "1": rows[0].seeds[1].value}
    assert entry.provenance.seeds.metric == "top1" and entry.license == "mit" and entry.input.fit == "crop"
    assert entry.provenance.command == f"python train.py {m.recipe} " + " ".join(runs[0].overrides)
    assert publish(m, "a test machine", manifest, folder) == []  # already published
    # Republished (to add seeds) at a later commit: the same file keeps its provenance.
    assert publish(m, "another machine", manifest, folder, replace=True, git_commit="f" * 40) == [
        "resnet20.t"
    ]
    (again,) = load_manifest(manifest)
    assert (again.provenance.git_commit, again.provenance.hardware) == (
        entry.provenance.git_commit,
        entry.provenance.hardware,
    )
    assert again.provenance.hardware.startswith("a test machine")
    monkeypatch.setenv("ZOO_MANIFEST", str(manifest))
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(folder))
    loaded = zoo.create_model("resnet20.t", pretrained=True).state_dict()
    saved = load_file(runs[0].out_dir / "model.safetensors")
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())


def test_a_diverged_run_is_a_result_not_an_error(tmp_path):
    m = load_matrix(_matrix(tmp_path, seeds=[0]))
    run_matrix(m, only="layernorm", extra=["optim.lr=.nan"])
    run = plan(m)[1]
    assert run.state() == "diverged"
    assert "loss is nan" in json.loads((run.out_dir / "diverged.json").read_text())["message"]


def _row(name, values, params=100_000, group="g"):
    seeds = [SeedResult(i, v, 1.0, 1000.0, 1, "bf16") for i, v in enumerate(values)]
    return RowResult(name, group, "resnet20", {}, "", params, 1_000_000, seeds)


def test_statistics_and_verdicts():
    a, b = _row("resnet20_batchnorm", [94.0, 94.2, 94.4]), _row("resnet20_nonorm", [92.0, 92.5, 93.0])
    assert math.isclose(a.std, statistics.stdev([94.0, 94.2, 94.4]))
    diff, se, verdict = compare(a, b)
    assert math.isclose(diff, 92.5 - 94.2) and verdict == "lower"
    assert math.isclose(se, math.sqrt(0.2**2 / 3 + 0.5**2 / 3))
    assert compare(a, _row("x", [94.1, 94.3, 94.0]))[2] == "within noise"
    assert compare(a, _row("x", [95.0]))[2] == "one seed: spread unknown"
    claims = [Claim("Normalization", [Comparison("resnet20_batchnorm", "resnet20_nonorm")], note="lr 0.1")]
    text = "\n".join(claim_readings([a, b], [], claims=claims))
    assert "**Normalization** (lr 0.1): `resnet20_nonorm` vs `resnet20_batchnorm`: -1.70" in text
    assert "(lower)" in text
    assert claim_readings([a], [], claims=claims) == []  # a comparison without results is left out


def test_readings_add_the_cost_where_it_differs_and_read_map_as_a_fraction():
    a = _row("fcos", [0.61, 0.62], params=12_000_000)
    b = _row("fcos_dcn", [0.63, 0.64], params=12_100_000)
    c = _row("big", [0.7, 0.71], params=24_000_000)
    claims = [Claim("Deformable", [Comparison("fcos", "fcos_dcn", label="head"), Comparison("fcos", "big")])]
    (line,) = claim_readings([a, b, c], [], claims=claims, metric="map")
    # no "points" for a fraction; no cost note where parameters differ by less than a tenth
    assert "head: `fcos_dcn` vs `fcos`: +0.0200 ± 0.0071 (higher); `big`" in line
    assert "`big` vs `fcos`: +0.0900 ± 0.0071 (higher) with 24.00M parameters against 12.00M (2.00x)" in line
    assert "| mAP@[.5:.95] (mean ± std) |" in render_table([a], "map")
    assert "0.6150 ± 0.0071" in render_table([a], "map")


def test_table_shows_each_seed_and_mean_and_std():
    table = render_table([_row("resnet20_batchnorm", [94.0, 94.5]), _row("plain20", [])])
    line = next(x for x in table.splitlines() if "resnet20_batchnorm" in x)
    assert "94.25 ± 0.35" in line and "94.00, 94.50" in line and "100K" in line
    assert "not run yet" in table
    diverged = _row("resnet20_nonorm", [93.0])
    diverged.diverged = [1, 2]
    assert "93.00 (1 seed); diverged (seed 1, 2)" in render_table([diverged])
    assert "`resnet20_nonorm` (seed 1, 2)" in "\n".join(claim_readings([diverged], []))


def test_a_gpu_seed_counts_for_accuracy_but_not_for_minutes(tmp_path):
    gpu = "cuda:0 (NVIDIA H100 80GB HBM3)"
    row = _row("resnet20_batchnorm", [94.0, 94.5])
    row.seeds[1] = SeedResult(1, 94.5, 0.5, 20000.0, 1, "bf16", device=gpu)
    only_gpu = _row("plain20", [93.0])
    only_gpu.seeds[0] = SeedResult(0, 93.0, 0.5, 20000.0, 1, "bf16", device=gpu)
    table = render_table([row, only_gpu])
    line = next(x for x in table.splitlines() if "resnet20_batchnorm" in x)
    assert "94.25 ± 0.35" in line and "94.00, 94.50 (GPU)" in line
    assert line.endswith("| 1000 | 1.0 |")  # img/s and minutes of the CPU seed alone
    assert next(x for x in table.splitlines() if "plain20" in x).endswith(
        "| 93.00 (GPU) | 100K | 1.0M | - | - |"
    )
    assert [p.name for p in plot_cost([row, only_gpu], tmp_path)] == ["accuracy_vs_cost.png"]


def test_a_run_held_by_another_runner_is_skipped_and_its_lock_dies_with_it(tmp_path):
    m = load_matrix(_matrix(tmp_path))
    run = plan(m)[0]
    run.out_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run.out_dir / RUNNER_LOCK)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    with claim(run) as mine:
        assert not mine
    holder.kill()
    holder.wait()
    with claim(run) as mine:  # the killed runner's lock is gone with it
        assert mine and (run.out_dir / RUNNER_LOCK).read_text().strip() == str(os.getpid())
        with claim(run) as again:  # and one runner never takes a run twice
            assert not again


def test_a_failing_run_is_reported_and_the_matrix_goes_on(tmp_path, capsys):
    m = load_matrix(_matrix(tmp_path, seeds=[0]))
    failed = run_matrix(m, extra=["data.batch_size=100000"])  # refused before training, every run
    assert failed == ["base seed 0", "layernorm seed 0"]
    assert main(["run", str(tmp_path / "matrix.yaml"), "--set", "data.batch_size=100000"]) == 1


RESULTS_DOC = REPO / "docs/results.md"


@pytest.mark.parametrize(
    "matrix_file", ["configs/fashion_mnist/concept/matrix.yaml", "configs/imagenette/concept/matrix.yaml"]
)
def test_results_doc_concept_tables_are_generated_from_the_committed_runs(monkeypatch, matrix_file):
    monkeypatch.chdir(REPO)  # the matrix's out_dir is relative to the repository root
    matrix = load_matrix(REPO / matrix_file)
    report = matrix.out_dir / "report/results.json"
    norms = json.loads(report.read_text(encoding="utf-8"))["gradient_norms"] if report.is_file() else None
    text = RESULTS_DOC.read_text(encoding="utf-8")
    expected = splice(text, matrix_markdown(matrix, norms), marks=markers(matrix))
    assert text == expected, (
        f"docs/results.md's {matrix.out_dir.name} table disagrees with the run folders in {matrix.out_dir}: "
        f"run python -m zoo.ablate_report {matrix_file} --readme docs/results.md"
    )


def test_results_doc_ideas_table_is_generated_from_the_committed_runs(monkeypatch):
    monkeypatch.chdir(REPO)
    matrices = [
        load_matrix(REPO / f"configs/{d}/concept/matrix.yaml") for d in ("fashion_mnist", "imagenette")
    ]
    text = RESULTS_DOC.read_text(encoding="utf-8")
    assert text == splice(text, ideas_table(matrices), marks=(IDEAS_START, IDEAS_END)), (
        "docs/results.md's idea x dataset table is stale: run python -m zoo.ablate_report "
        "configs/fashion_mnist/concept/matrix.yaml configs/imagenette/concept/matrix.yaml --ideas "
        "--readme docs/results.md"
    )


def test_ideas_table_sets_one_idea_on_two_datasets_side_by_side(tmp_path):
    for name, top1 in (("a", [93.0, 93.2]), ("b", [94.0, 94.4])):
        d = tmp_path / name
        d.mkdir()
        spec = yaml.safe_load(_matrix(d).read_text())
        spec["title"] = f"data {name}"
        spec["claims"] = [{"title": "N", "compare": [{"base": "base", "row": "layernorm", "idea": "LN"}]}]
        (d / "matrix.yaml").write_text(yaml.safe_dump(spec))
        m = load_matrix(d / "matrix.yaml")
        for run in plan(m):
            offset = 0.0 if run.row.name == "base" else -1.0
            _fake_run(run.out_dir, top1[run.seed] + offset)
    table = ideas_table([load_matrix(tmp_path / n / "matrix.yaml") for n in ("a", "b")])
    assert table.splitlines()[0] == "| idea | data a: top-1 points | data b: top-1 points |"
    assert table.splitlines()[2] == (
        "| LN | -1.00 ± 0.14 (lower; `layernorm` vs `base`) | -1.00 ± 0.28 (lower; `layernorm` vs `base`) |"
    )


def test_recorded_gradient_norms_are_re_measured():
    """The README's gradient reading comes from results.json; here it is measured again (float32
    kernels differ in the last bits between CPUs, hence the tolerance)."""
    recorded = json.loads((REPO / "results/fashion_mnist_concept/report/results.json").read_text())
    measured = initial_gradient_norms()
    assert measured.keys() == recorded["gradient_norms"].keys()
    for name, values in measured.items():
        assert values == pytest.approx(recorded["gradient_norms"][name], rel=1e-3, abs=1e-9), name


def _fake_run(folder: Path, top1: float, epochs: int = 3) -> None:
    """A finished run's small files, as the trainer writes them, without training."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"train": {"threads": 1, "amp_bf16": True}}))
    (folder / "summary.json").write_text(json.dumps({"final": {"top1": top1}, "train_wall_time_s": 60.0}))
    log = []
    for e in range(epochs):
        log.append({"kind": "train", "epoch": e, "step": e * 10 + 5, "loss": 2.0 - e, "img_per_s": 900.0})
        log.append(
            {"kind": "eval", "which": "model", "epoch": e, "step": e * 10 + 10, "top1": top1 - epochs + e}
        )
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))


@pytest.mark.parametrize("device, starts", [("cpu", False), ("cuda:0 (NVIDIA H100 80GB HBM3)", True)])
def test_until_estimates_a_run_from_its_rows_cpu_seeds(tmp_path, capsys, monkeypatch, device, starts):
    """An hour-long CPU seed 0 keeps seed 1 from starting ten minutes before --until; the same
    seed trained on a GPU says nothing of the time here, so seed 1 starts."""
    m = load_matrix(_matrix(tmp_path))
    first = next(r for r in plan(m) if r.label == "base seed 0")
    _fake_run(first.out_dir, 93.0)
    summary = json.loads((first.out_dir / "summary.json").read_text())
    summary.update(train_wall_time_s=3600.0, device=device)
    (first.out_dir / "summary.json").write_text(json.dumps(summary))
    started = []
    monkeypatch.setattr(ablate_module, "execute", lambda run, matrix, extra: started.append(run.label))
    assert run_matrix(m, only="base seed 1", until=time.time() + 600) == []
    assert started == (["base seed 1"] if starts else [])
    assert ("would end after --until (about 60 min)" in capsys.readouterr().out) is not starts


def test_report_writes_tables_pictures_and_the_readme_block(tmp_path):
    sweeps = [{"name": "lr", "rows": ["base"], "key": "optim.lr", "values": [0.1, 1.0]}]
    m = load_matrix(_matrix(tmp_path, sweeps=sweeps, extras=["gradient_norms"]))
    runs = {r.label: r for r in plan(m)}
    for label, top1 in [("base seed 0", 93.0), ("base seed 0 lr=0.1", 92.0), ("base seed 0 lr=1.0", 94.0)]:
        _fake_run(runs[label].out_dir, top1)
    diverged = runs["base seed 0 lr=1.0"].out_dir
    (diverged / "summary.json").unlink()
    (diverged / "diverged.json").write_text("{}")
    readme = tmp_path / "README.md"
    start, end = markers(m)
    readme.write_text(f"intro\n{start}\nold\n{end}\nrest\n")
    results = write_report(m, tmp_path / "report", readme)
    names = {p.name for p in (tmp_path / "report").iterdir()}
    assert {
        "results.json",
        "table.md",
        "curves_normalization.png",
        "accuracy_vs_cost.png",
        "lr_sweep.png",
        "gradient_norms.png",
    } <= names
    assert [r["mean"] for r in results["rows"]] == [93.0, None]  # layernorm has not run
    assert [(s["value"], s["result"], s["diverged"], s["ema_result"]) for s in results["sweeps"]] == [
        (0.1, 91.0, False, 92.0),  # the raw weights' last evaluation, and the EMA's
        (1.0, None, True, None),
    ]
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("rest\n") and "old" not in text
    assert "93.00 (1 seed)" in text and "`base` 0.1: 91.00, 1.0: diverged" in text


@pytest.mark.parametrize(
    "xs, labels",
    [
        ([272_000], ["200K", "500K"]),  # one row: the axis is widened to two ticks
        ([176_000, 4_019_000], ["200K", "500K", "1M", "2M", "5M"]),
        ([700, 800], ["500", "1K", "2K"]),
    ],
)
def test_parameter_axis_always_has_labelled_ticks(xs, labels):
    from zoo.viz import pyplot

    plt = pyplot()
    fig, ax = plt.subplots()
    _log_axis_in_thousands(ax, xs)
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    lo, hi = ax.get_xlim()
    assert lo <= min(xs) and max(xs) <= hi
    plt.close(fig)


def test_cbam_picture_from_a_weights_file(tmp_path):
    model = zoo.create_model("cbam_resnet20", in_chans=1, num_classes=10)
    save_file(model.state_dict(), tmp_path / "cbam.safetensors")
    (path,) = plot_cbam(tmp_path / "cbam.safetensors", {}, tmp_path, n=2)
    assert path.name == "cbam_attention.png" and path.stat().st_size > 0


def test_speed_times_every_row_before_training(tmp_path):
    m = load_matrix(_matrix(tmp_path))
    rows = measure_speed(m, steps=1)
    assert [r["row"] for r in rows] == ["base", "layernorm"]
    for r in rows:  # the tiny recipe fixes fp32 NCHW: one setting, measured
        assert list(r["img_per_s"]) == ["fp32, NCHW"] and r["img_per_s"]["fp32, NCHW"] > 0
        assert r["fastest"] == "fp32, NCHW" and r["params"] > 0
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


def test_per_class_differences_and_their_picture(tmp_path):
    spec = yaml.safe_load(_matrix(tmp_path).read_text())
    spec["claims"] = [{"title": "N", "compare": [{"base": "base", "row": "layernorm"}]}]
    spec["extras"] = ["per_class"]
    (tmp_path / "matrix.yaml").write_text(yaml.safe_dump(spec))
    m = load_matrix(tmp_path / "matrix.yaml")
    per_class = {  # (row, seed) -> per-class values: pole differs beyond noise, sky does not
        ("base", 0): {"pole": 10.0, "sky": 80.0},
        ("base", 1): {"pole": 10.2, "sky": 82.0},
        ("layernorm", 0): {"pole": 14.0, "sky": 81.0},
        ("layernorm", 1): {"pole": 14.2, "sky": 80.0},
    }
    for run in plan(m):
        _fake_run(run.out_dir, 90.0)
        summary = json.loads((run.out_dir / "summary.json").read_text())
        values = per_class[(run.row.name, run.seed)]
        summary["final"].update({f"per_class_iou/{k}": v for k, v in values.items()})
        (run.out_dir / "summary.json").write_text(json.dumps(summary))
    [(comparison, diffs)] = per_class_differences(m)
    assert (comparison.base, comparison.row) == ("base", "layernorm")
    pole, sky = diffs["per_class_iou/pole"], diffs["per_class_iou/sky"]
    assert pole[0] == pytest.approx(4.0) and pole[1] == pytest.approx(0.02**0.5) and pole[2] == "higher"
    assert sky[0] == pytest.approx(-0.5) and sky[2] == "within noise"
    out = tmp_path / "report"
    out.mkdir()
    assert [p.name for p in plot_per_class(m, out)] == ["per_class.png"]

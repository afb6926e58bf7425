import json

import pytest

from zoo.time_to_accuracy import main, read_curve


def _run(folder, epochs, accs, batch=10, steps_per_epoch=5, minutes=12.0, max_steps=0):
    folder.mkdir(parents=True)
    cfg = {"model": {"name": "resnet18"}, "schedule": {"epochs": epochs}, "optim": {"opt": "adamw"}}
    cfg["data"], cfg["train"] = {"batch_size": batch, "train_size": 112}, {"max_steps": max_steps}
    (folder / "config.json").write_text(json.dumps(cfg))
    summary = {"train_wall_time_s": minutes * 60, "step": max_steps or epochs * steps_per_epoch}
    (folder / "summary.json").write_text(json.dumps(summary))
    lines = []
    for i, acc in enumerate(accs):
        epoch = (i + 1) * epochs // len(accs) - 1
        step = (epoch + 1) * steps_per_epoch
        lines.append({"kind": "train", "epoch": epoch, "step": step, "loss": 1.0})
        lines.append(
            {
                "kind": "eval",
                "which": "model",
                "epoch": epoch,
                "step": step,
                "elapsed_s": 60.0 * i,
                "top1": acc,
            }
        )
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines))
    return folder


def test_curves_and_points_come_from_the_run_folders(tmp_path, capsys):
    long = _run(tmp_path / "long", 20, [50.0, 61.5, 70.25])
    short = _run(tmp_path / "short", 10, [40.0, 55.5], minutes=7.0)
    (tmp_path / "eval.json").write_text(json.dumps({"top1": 72.5}))
    out = tmp_path / "tta.png"
    args = [str(long), str(short), "--point", "long, resized", str(long), str(tmp_path / "eval.json")]
    assert main([*args, "--img-per-s", "50", "--out", str(out), "--json", str(tmp_path / "tta.json")]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "tta.json").read_text())
    assert [c["values"] for c in data["curves"]] == [[50.0, 61.5, 70.25], [40.0, 55.5]]
    assert data["curves"][0]["epochs"][-1] == 20 and data["curves"][0]["images_per_epoch"] == 50
    assert data["points"] == [
        {"label": "long, resized", "epochs": 20, "value": 72.5, "source": str(tmp_path / "eval.json")}
    ]
    table = capsys.readouterr().out
    assert "| resnet18, 10 ep, adamw, train 112 px | 10 | 7.0 | 55.50 |" in table


def test_unfinished_or_wrong_folders_are_refused_by_name(tmp_path):
    run = _run(tmp_path / "run", 10, [40.0])
    (run / "summary.json").unlink()
    with pytest.raises(SystemExit, match="run: no summary.json"):
        read_curve(run, "top1")
    other = _run(tmp_path / "other", 10, [40.0])
    with pytest.raises(SystemExit, match="no evaluation with 'miou'"):
        read_curve(other, "miou")
    cut = _run(tmp_path / "cut", 10, [40.0], max_steps=7)
    with pytest.raises(SystemExit, match="cut: stopped at step 7 .*only whole schedules"):
        read_curve(cut, "top1")


def test_a_minutes_axis_needs_runs_with_the_same_epochs(tmp_path):
    a = _run(tmp_path / "a", 10, [40.0], batch=10)
    b = _run(tmp_path / "b", 10, [45.0], batch=20)
    with pytest.raises(SystemExit, match="differ in images per epoch or training size"):
        main([str(a), str(b), "--img-per-s", "50", "--out", str(tmp_path / "x.png")])
    assert main([str(a), str(b), "--out", str(tmp_path / "x.png")]) == 0

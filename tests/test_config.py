import pytest

from zoo.config import ConfigError, RunConfig, load_config, to_dict

from .conftest import REPO


def test_recipe_extends_its_base():
    cfg = load_config(REPO / "configs/fashion_mnist/resnet20.yaml")
    assert isinstance(cfg, RunConfig)
    assert cfg.data.dataset == "fashion_mnist"  # from base.yaml
    assert cfg.model.name == "resnet20"  # from the recipe
    assert cfg.model.args == {"in_chans": 1}


def test_overrides_are_typed():
    cfg = load_config(
        None, ["optim.lr=0.05", "schedule.epochs=3", "train.ema=true", "model.args={norm: groupnorm}"]
    )
    assert cfg.optim.lr == 0.05 and cfg.schedule.epochs == 3 and cfg.train.ema is True
    assert cfg.model.args == {"norm": "groupnorm"}
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0  # an int is a fine float


@pytest.mark.parametrize(
    "override, message",
    [
        (["optim.lrr=0.1"], "unknown config key 'optim.lrr'. Did you mean: lr?"),
        (["trian.seed=1"], "Did you mean: train?"),
        (["optim.lr=fast"], "optim.lr: expected float, got str 'fast'"),
        (["schedule.epochs=2.5"], "schedule.epochs: expected int"),
        (["train.ema=1"], "train.ema: expected bool, got int"),
        (["train.amp_bf16=fast"], "train.amp_bf16: expected bool or 'auto', got str 'fast'"),
        (["train.channels_last=1"], "train.channels_last: expected bool or 'auto', got int 1"),
        (["optim"], "override must look like section.key=value"),
    ],
)
def test_bad_keys_and_types_name_the_key(override, message):
    with pytest.raises(
        ConfigError, match=message.replace("?", r"\?").replace("(", r"\(").replace(")", r"\)")
    ):
        load_config(None, override)


def test_unknown_key_in_a_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  batch_sise: 64\n")
    with pytest.raises(ConfigError, match="data.batch_sise.*batch_size"):
        load_config(path)


def test_missing_file_and_base(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(child)


def test_round_trip_through_a_dict():
    cfg = load_config(REPO / "configs/fashion_mnist/resnet20.yaml")
    from zoo.config import from_dict

    assert from_dict(to_dict(cfg)) == cfg


# -- errors that name the file, the key and the value -----------------------------------------


def test_malformed_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr: [0.1\n")
    with pytest.raises(ConfigError, match=f"{path}: not valid YAML \\(line"):
        load_config(path)


def test_a_circular_base_is_named(tmp_path):
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="circular _base_: .*a.yaml -> .*b.yaml -> .*a.yaml"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("- 1\n- 2\n", "expected a mapping of sections .* got a list"),
        ("_base_: [x.yaml]\n", r"_base_ must be one file name, got \['x.yaml'\]"),
        ("_base_: 5\n", "_base_ must be one file name, got 5"),
    ],
)
def test_a_file_of_the_wrong_shape_is_named(tmp_path, text, message):
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("override", ["optim.lr=[1,2", "optim..lr=1", "=3"])
def test_a_bad_override_is_named(override):
    with pytest.raises(ConfigError, match="override"):
        load_config(None, [override])


def test_scientific_notation_is_a_float():
    assert load_config(None, ["optim.lr=1e-3"]).optim.lr == 0.001
    assert load_config(None, ["optim.weight_decay=5E-4"]).optim.weight_decay == 0.0005


@pytest.mark.parametrize(
    "override, message",
    [
        ("schedule.epochs=0", "schedule.epochs: expected an integer >= 1, got 0"),
        ("data.batch_size=0", "data.batch_size: expected an integer >= 1, got 0"),
        ("data.batch_size=-1", "data.batch_size: expected an integer >= 1, got -1"),
        ("data.eval_batch_size=0", "data.eval_batch_size: expected an integer >= 1, got 0"),
        ("train.log_every_steps=0", "train.log_every_steps: expected an integer >= 1, got 0"),
        ("train.ema_decay=5", r"train.ema_decay: expected a number in \[0, 1\)"),
    ],
)
def test_out_of_range_values_are_refused_before_anything_runs(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_a_batch_larger_than_the_dataset_is_refused_before_training(tmp_path):
    from zoo.engine import train

    cfg = load_config(
        REPO / "configs/fashion_mnist/resnet20.yaml",
        ["data.train_split=test", "data.batch_size=100000", f"train.out_dir={tmp_path}"],
    )
    with pytest.raises(ConfigError, match="data.batch_size 100000 is larger than the 10000 samples"):
        train(cfg)
    assert not (tmp_path / "config.json").exists()


def test_base_model_args_merge_with_the_recipe(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  args:\n    in_chans: 1\n    norm: layernorm\n")
    (tmp_path / "recipe.yaml").write_text("_base_: base.yaml\nmodel:\n  args:\n    attn: cbam\n")
    assert load_config(tmp_path / "recipe.yaml").model.args == {
        "in_chans": 1,
        "norm": "layernorm",
        "attn": "cbam",
    }


def test_removed_and_renamed_keys_of_saved_configs():
    from zoo.config import from_saved

    old = to_dict(load_config(REPO / "configs/bccd/base.yaml"))
    old["data"]["num_workers"] = 0  # what configs saved before this version hold
    del old["data"]["vflip"]
    cfg = from_saved(old)
    assert cfg.data.hflip and cfg.data.vflip  # detection's hflip meant both flips then
    with pytest.raises(ConfigError, match="data.num_workers"):
        load_config(None, ["data.num_workers=2"])


def test_overrides_may_follow_the_options(tmp_path):
    import subprocess
    import sys

    from .conftest import run_env

    out = subprocess.run(
        [sys.executable, "train.py", "configs/fashion_mnist/resnet20.yaml", "--data-dir", str(tmp_path),
         "--resume", "optim.lr=0.5", "--show-config"],
        cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "lr: 0.5" in out.stdout and f"data_dir: {tmp_path}" in out.stdout

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

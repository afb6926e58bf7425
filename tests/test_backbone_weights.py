"""``create_model(..., backbone_weights=...)``: a dense model's backbone from a classifier's
verified weights, the config key that does it for runs, and the manifest record of it.

There is no published ``resnet18.*`` classifier yet: every test records its own random
weights in a manifest and weights folder of its own (``weight_store``), as the weights tests do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import zoo
import zoo.hub as hub
from zoo import cli
from zoo.config import DataConfig, ModelConfig, RunConfig, to_dict
from zoo.data import dataset_info
from zoo.engine.checkpoint import load_run, model_from_config, save_weights
from zoo.engine.trainer import check_resume_config
from zoo.weights import (
    BackboneSource,
    ManifestError,
    Provenance,
    WeightsError,
    adapt_first_conv,
    add_entry,
    backbone_source,
    find_weights,
    load_manifest,
    parse_manifest,
)
from zoo.weights import main as weights_main

from .conftest import DATA_DIR, PROVENANCE, REPO, WEIGHTS_META, random_state

BACKBONE = "resnet18.testnette"
# What add_entry needs for a segmentation weight (the classifier metadata of WEIGHTS_META
# has 10 label names, not CamVid's 11).
SEG_META = {**WEIGHTS_META, "metrics": {"miou": 50.0}, "label_names": [], "dataset": "camvid"}


def record(store, name: str, seed: int = 0, model_args: dict | None = None, **build) -> dict:
    """Random weights of ``name``'s architecture (10 classes for a classifier), recorded in the
    test's manifest; returns the state dict written."""
    arch = name.split(".")[0]
    model_args = dict(model_args or {})
    classifier = zoo._registry.get_entry(arch).task == "classification"
    state = random_state(arch, seed, **({"num_classes": 10} if classifier else {}), **model_args, **build)
    save_file(state, store.trained)
    add_entry(name, store.trained, model_args=model_args, **(WEIGHTS_META if classifier else SEG_META))
    return state


@pytest.fixture
def store(weight_store):
    weight_store.backbone = record(weight_store, BACKBONE)
    return weight_store


def assert_backbone_is(model, state: dict, in_chans: int = 3):
    """Every tensor of ``model.backbone`` is the classifier's (the first conv adapted), and the
    classifier's every tensor but its head is in the backbone."""
    got = model.backbone.state_dict()
    expected = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected["conv1.weight"] = adapt_first_conv(expected["conv1.weight"], in_chans)
    offsets = {k for k in got if ".offset_mask." in k}
    assert set(got) - offsets == set(expected)
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=0, msg=k)


# -- loading -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("deeplabv3_resnet18", {}),  # output stride 8 (dilated layer3 and layer4)
        ("deeplabv3_resnet18", {"output_stride": 16, "aux_loss": True}),
        ("fcn_resnet18", {"output_stride": 32}),
        ("deeplabv3plus_resnet18", {}),
        ("fcos_resnet18", {}),
    ],
)
def test_backbone_starts_from_the_entry_and_the_heads_from_scratch(store, name, kwargs):
    torch.manual_seed(0)
    model = zoo.create_model(name, backbone_weights=BACKBONE, **kwargs)
    assert_backbone_is(model, store.backbone)
    w = find_weights(BACKBONE)
    assert model.backbone_weights == {"name": BACKBONE, "sha256": w.sha256}
    torch.manual_seed(0)
    scratch = zoo.create_model(name, **kwargs)
    assert scratch.backbone_weights is None
    heads = {k: v for k, v in scratch.state_dict().items() if not k.startswith("backbone.")}
    assert heads, "a model with no head outside its backbone tests nothing"
    for k, v in heads.items():  # only the backbone changed: the heads are initialised as ever
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0, msg=k)


def test_in_chans_adapts_the_first_conv_as_pretrained_does(store):
    model = zoo.create_model("deeplabv3_resnet18", in_chans=1, backbone_weights=BACKBONE)
    assert model.in_chans == 1
    assert_backbone_is(model, store.backbone, in_chans=1)  # to one channel: the filters summed


def test_a_run_config_starts_its_backbone_and_its_restored_run_does_not_need_it(store, tmp_path):
    cfg = RunConfig(
        task="segmentation",
        model=ModelConfig("deeplabv3_resnet18", {"output_stride": 16, "backbone_weights": BACKBONE}),
        data=DataConfig(dataset="camvid"),
    )
    info = dataset_info("camvid")
    model = model_from_config(cfg, info)
    assert model.backbone_weights["name"] == BACKBONE and model.num_classes == info.num_classes
    assert_backbone_is(model, store.backbone)
    with torch.no_grad():
        for p in model.parameters():  # "trained": no longer the backbone's starting point
            p.add_(0.5)
    path = tmp_path / "model.safetensors"
    save_weights(model.state_dict(), path, {"config": to_dict(cfg), "info": info.to_dict()})

    store.manifest.write_text("[]\n")  # the backbone's entry and file are gone
    for f in store.weights.iterdir():
        f.unlink()
    with pytest.raises(WeightsError, match=f"no pretrained weights for '{BACKBONE}'"):
        model_from_config(cfg, info)
    run = load_run(path)  # every weight comes from the run's own file
    assert run.cfg.model.args["backbone_weights"] == BACKBONE  # the metadata carries it
    restored = run.model.state_dict()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(restored[k], v, rtol=0, atol=0, msg=k)


def test_a_resume_may_not_change_the_backbone_weights(tmp_path):
    def cfg(args):
        return RunConfig(task="segmentation", model=ModelConfig("deeplabv3_resnet18", args))

    saved = cfg({"backbone_weights": BACKBONE})
    assert check_resume_config(saved, cfg({"backbone_weights": BACKBONE}), tmp_path) == {}
    for other in ({}, {"backbone_weights": "resnet18.other"}):
        with pytest.raises(zoo.config.ConfigError, match="model.args"):
            check_resume_config(saved, cfg(other), tmp_path)


# -- refusals, each naming the entry and what was expected ----------------------------------------


def test_weights_of_another_task_are_refused(store):
    record(store, "deeplabv3_resnet18.fake")
    with pytest.raises(WeightsError, match=r"deeplabv3_resnet18.fake are segmentation weights.*resnet18"):
        zoo.create_model("fcn_resnet18", backbone_weights="deeplabv3_resnet18.fake")


def test_weights_of_another_architecture_are_refused(store):
    record(store, "resnet20.fake")
    with pytest.raises(WeightsError, match=r"resnet20.fake are resnet20 weights.*backbone is resnet18"):
        zoo.create_model("deeplabv3_resnet18", backbone_weights="resnet20.fake")


@pytest.mark.parametrize(
    "trained_with, built_with, message",
    [
        ({"norm": "groupnorm"}, {}, "norm='batchnorm' (the weights: 'groupnorm')"),
        ({}, {"norm": "groupnorm"}, "norm='groupnorm' (the weights: 'batchnorm')"),
        ({"norm": "layernorm"}, {"norm": "groupnorm"}, "norm='groupnorm' (the weights: 'layernorm')"),
        ({}, {"attn": "se"}, "attn='se' (the weights: None)"),
    ],
)
def test_weights_trained_with_other_backbone_arguments_are_refused(store, trained_with, built_with, message):
    # groupnorm and layernorm hold tensors of the same names and shapes: only the arguments tell.
    record(store, "resnet18.other", model_args=trained_with)
    with pytest.raises(WeightsError, match=r"resnet18.other were trained with other arguments") as e:
        zoo.create_model("deeplabv3_resnet18", backbone_weights="resnet18.other", **built_with)
    assert message in str(e.value)


def test_backbone_weights_that_are_not_a_name_are_refused():
    with pytest.raises(TypeError, match="backbone_weights must be a weights name"):
        zoo.create_model("deeplabv3_resnet18", backbone_weights=True)


def test_a_model_without_a_backbone_is_refused(store):
    with pytest.raises(ValueError, match="resnet18 is not built on a backbone.*pretrained="):
        zoo.create_model("resnet18", backbone_weights=BACKBONE)


@pytest.mark.parametrize("source", [{"pretrained": True}, {"checkpoint_path": "x.safetensors"}])
def test_backbone_weights_with_other_weights_are_refused(store, source):
    (given,) = source
    with pytest.raises(ValueError, match=f"backbone_weights='{BACKBONE}' and {given}= both say"):
        zoo.create_model("deeplabv3_resnet18", backbone_weights=BACKBONE, **source)


def test_an_unknown_or_tampered_entry_is_refused(store):
    with pytest.raises(WeightsError, match="no pretrained weights for 'resnet18.nope'"):
        zoo.create_model("deeplabv3_resnet18", backbone_weights="resnet18.nope")
    path = store.weights / find_weights(BACKBONE).file
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(WeightsError, match=f"not the file the manifest records for {BACKBONE}"):
        zoo.create_model("deeplabv3_resnet18", backbone_weights=BACKBONE)


# -- a DCNv2 backbone from plain classification weights ----------------------------------------------


def test_a_dcn_backbone_loads_the_plain_weights_and_starts_as_the_plain_backbone(store):
    torch.manual_seed(0)
    dcn = zoo.create_model("fcos_dcnbackbone_resnet18", backbone_weights=BACKBONE).eval()
    assert_backbone_is(dcn, store.backbone)
    offsets = {k: v for k, v in dcn.backbone.state_dict().items() if ".offset_mask." in k}
    assert offsets and all(k.startswith("layer4.") for k in offsets)
    assert all(v.abs().sum() == 0 for v in offsets.values())  # kept at their zero initialisation
    plain = zoo.create_model("fcos_resnet18", backbone_weights=BACKBONE).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(dcn.backbone(x), plain.backbone(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_a_dcn_backbone_accepts_only_the_offset_predictors_as_missing(store, monkeypatch):
    real = zoo._builder.build_adapted

    class Without(torch.nn.Module):
        """A classifier whose state lacks one tensor that is not an offset predictor's."""

        def __init__(self, model, key):
            super().__init__()
            self.state = {k: v for k, v in model.state_dict().items() if k != key}

        def state_dict(self):
            return self.state

    monkeypatch.setattr(
        zoo._builder, "build_adapted", lambda *a: Without(real(*a), "layer4.0.bn1.running_mean")
    )
    with pytest.raises(WeightsError, match=r"(?s)resnet18.testnette do not fit.*layer4.0.bn1.running_mean"):
        zoo.create_model("fcos_dcnbackbone_resnet18", backbone_weights=BACKBONE)


def test_a_dcn_classifier_does_not_load_into_a_plain_backbone(store):
    record(store, "resnet18.dcn", model_args={"deform_stages": [4]})
    with pytest.raises(WeightsError, match=r"(?s)resnet18.dcn do not fit.*offset_mask"):
        zoo.create_model("fcos_resnet18", backbone_weights="resnet18.dcn")


# -- hf-hub: timm's resnet18 from a stand-in Hub on 127.0.0.1 ------------------------------------------

CLIENT = r"""
import json, sys, torch, zoo
from safetensors.torch import load_file

out = []
for spec, expected in json.loads(sys.argv[1]):
    try:
        model = zoo.create_model("deeplabv3_resnet18", output_stride=16, backbone_weights=spec)
        want = {k: v for k, v in load_file(expected).items() if not k.startswith("fc.")}
        got = model.backbone.state_dict()
        same = set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
        out.append({"same": same, "recorded": model.backbone_weights})
    except Exception as e:
        out.append({"error": f"{type(e).__name__}: {e}"})
print(json.dumps(out))
"""


def test_hf_hub_backbone_weights_load_from_a_timm_file(tmp_path):
    import timm

    from .test_hub import FakeHub, fake_hub_env, run_client

    torch.manual_seed(3)
    save_file(timm.create_model("resnet18").state_dict(), tmp_path / "resnet18.safetensors")
    save_file(timm.create_model("resnet34").state_dict(), tmp_path / "resnet34.safetensors")
    fake = FakeHub()
    try:
        for arch in ("resnet18", "resnet34"):
            data = (tmp_path / f"{arch}.safetensors").read_bytes()
            fake.add(f"someorg/{arch}-test", "e" * 40, {"model.safetensors": data}, branch="main")
        env = fake_hub_env(fake, tmp_path, ZOO_WEIGHTS_DIR=str(tmp_path / "none"))
        calls = [
            ["hf-hub:someorg/resnet18-test", str(tmp_path / "resnet18.safetensors")],
            ["hf-hub:someorg/resnet34-test", str(tmp_path / "resnet34.safetensors")],
        ]
        resnet18, resnet34 = run_client(env, calls, CLIENT)
    finally:
        fake.stop()
    sha = hashlib.sha256((tmp_path / "resnet18.safetensors").read_bytes()).hexdigest()
    assert resnet18 == {"same": True, "recorded": {"name": "hf-hub:someorg/resnet18-test", "sha256": sha}}
    assert resnet34["error"].startswith("WeightsError: hf-hub:someorg/resnet34-test does not fit resnet18")
    assert fake.requested("GET", "/someorg/resnet18-test/resolve/main/model.safetensors")


# -- the manifest's record, the model card and zoo info -----------------------------------------------


def trained_segmenter(store) -> Path:
    torch.manual_seed(0)
    model = zoo.create_model("deeplabv3_resnet18", output_stride=16, backbone_weights=BACKBONE)
    path = store.tmp / "segmenter.safetensors"
    save_file(model.state_dict(), path)
    return path


def provenance_from(backbone) -> Provenance:
    """The tests' provenance, starting from ``backbone`` (a manifest name, or a BackboneSource)."""
    if isinstance(backbone, str):
        backbone = backbone_source(backbone, load_manifest())
    return dataclasses.replace(PROVENANCE, backbone_weights=backbone)


def add_segmenter(store, name="deeplabv3_resnet18.from_testnette", backbone_weights=None, **changes):
    meta = {**SEG_META, "model_args": {"output_stride": 16}, "provenance": provenance_from(backbone_weights)}
    return add_entry(name, trained_segmenter(store), **{**meta, **changes})


def test_the_entry_records_the_backbone_it_started_from(store):
    w = add_segmenter(store, backbone_weights=BACKBONE)
    expected = BackboneSource(BACKBONE, find_weights(BACKBONE).sha256)
    assert w.provenance.backbone_weights == expected
    by_name = {e["name"]: e for e in json.loads(store.manifest.read_text())}
    assert by_name[w.name]["provenance"]["backbone_weights"] == {"name": BACKBONE, "sha256": expected.sha256}
    assert "backbone_weights" not in by_name[BACKBONE]["provenance"]  # written only when set
    assert find_weights(w.name).provenance.backbone_weights == expected  # read back typed
    # and the weight loads and verifies as any other
    assert zoo.create_model(w.name, pretrained=True).pretrained_weights == w


def test_the_entry_records_an_hf_hub_backbone_with_its_sha256(store):
    source = BackboneSource("hf-hub:timm/resnet18.a1_in1k", "ab" * 32)
    assert add_segmenter(store, backbone_weights=source).provenance.backbone_weights == source
    with pytest.raises(ValueError, match="sha256 must be given"):
        add_segmenter(store, backbone_weights="hf-hub:timm/resnet18.a1_in1k", replace=True)


def test_add_refuses_a_backbone_that_does_not_fit(store):
    with pytest.raises(WeightsError, match="no pretrained weights for 'resnet18.nope'"):
        add_segmenter(store, backbone_weights="resnet18.nope")
    record(store, "resnet20.fake")
    with pytest.raises(
        ValueError, match="resnet20.fake are resnet20 weights, deeplabv3_resnet18's backbone is resnet18"
    ):
        add_segmenter(store, backbone_weights="resnet20.fake")
    with pytest.raises(ValueError, match="resnet18 is not built on a backbone"):
        add_entry(
            "resnet18.again",
            store.weights / find_weights(BACKBONE).file,
            **{**WEIGHTS_META, "provenance": provenance_from(BACKBONE)},
        )
    with pytest.raises(ValueError, match="model_args must not hold backbone_weights"):
        add_segmenter(store, model_args={"output_stride": 16, "backbone_weights": BACKBONE})


def entry_json(**changes) -> dict:
    entry = {**dataclasses.asdict(find_weights(BACKBONE)), "name": "resnet18.x"}
    if "backbone_weights" in changes:
        entry["provenance"] = {**entry["provenance"], "backbone_weights": changes.pop("backbone_weights")}
    return {**entry, **changes}


@pytest.mark.parametrize(
    "backbone, problem",
    [
        (
            {"backbone_weights": {"name": BACKBONE, "sha256": "XYZ"}},
            "backbone_weights.sha256 'XYZ' is not 64",
        ),
        (
            {"backbone_weights": {"name": "deeplabv3_resnet18.camvid", "sha256": "a" * 64}},
            "neither a classifier's",
        ),
        ({"backbone_weights": {"name": BACKBONE}}, "missing field(s) 'sha256'"),
        ({"model_args": {"backbone_weights": BACKBONE}}, "model_args must not hold 'backbone_weights'"),
    ],
)
def test_the_manifest_validates_the_record(store, backbone, problem):
    with pytest.raises(ManifestError) as e:
        parse_manifest([entry_json(**backbone)])
    assert problem in str(e.value)
    assert parse_manifest([entry_json(backbone_weights={"name": BACKBONE, "sha256": "a" * 64})])


def test_weights_add_command_records_the_backbone(store, capsys):
    common = [
        "--dataset", "camvid", "--split", "test", "--metrics", '{"miou": 50.0}',
        "--mean", "0.4", "0.4", "0.4", "--std", "0.3", "0.3", "0.3",
        "--config", "c.yaml", "--command", "python train.py c.yaml", "--eval-command", "python eval.py x",
        "--model-args", '{"output_stride": 16}', "--git-commit", "0" * 40,
    ]  # fmt: skip
    path = str(trained_segmenter(store))
    assert weights_main(["add", "deeplabv3_resnet18.a", path, *common, "--backbone-weights", BACKBONE]) == 0
    assert (
        find_weights("deeplabv3_resnet18.a").provenance.backbone_weights.sha256
        == find_weights(BACKBONE).sha256
    )
    hub_args = ["--backbone-weights", "hf-hub:timm/resnet18.a1_in1k", "--backbone-sha256", "c" * 64]
    assert weights_main(["add", "deeplabv3_resnet18.b", path, *common, *hub_args]) == 0
    assert find_weights("deeplabv3_resnet18.b").provenance.backbone_weights == BackboneSource(
        "hf-hub:timm/resnet18.a1_in1k", "c" * 64
    )
    for wrong in (hub_args[:2], ["--backbone-weights", BACKBONE, "--backbone-sha256", "c" * 64]):
        with pytest.raises(SystemExit):
            weights_main(["add", "deeplabv3_resnet18.c", path, *common, *wrong])
        assert "--backbone-sha256 goes with --backbone-weights hf-hub:" in capsys.readouterr().err
    assert [e.name for e in load_manifest() if e.name.startswith("deeplabv3")] == [
        "deeplabv3_resnet18.a",
        "deeplabv3_resnet18.b",
    ]


def test_model_card_and_zoo_info_say_what_the_backbone_started_from(store, tmp_path, capsys):
    w = add_segmenter(store, backbone_weights=BACKBONE)
    sha = w.provenance.backbone_weights.sha256
    card = str(hub.model_card(w))
    assert f"Its backbone started from the weights `{BACKBONE}` (sha256 `{sha}`)" in card
    assert hub.hub_config(w)["backbone_weights"] == {"name": BACKBONE, "sha256": sha}
    assert "backbone started" not in str(hub.model_card(find_weights(BACKBONE)))
    assert cli.main(["info", w.name]) == 0
    assert f"backbone    started from {BACKBONE} (sha256 {sha[:12]}...)" in capsys.readouterr().out
    assert cli.main(["info", w.name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backbone_weights"] == {"name": BACKBONE, "sha256": sha}
    assert cli.main(["info", BACKBONE, "--json"]) == 0
    assert "backbone_weights" not in json.loads(capsys.readouterr().out)


@pytest.mark.skipif(DATA_DIR is None, reason="needs ZOO_DATA_DIR with camvid/ (CI: ../shared/data)")
def test_a_run_records_the_backbone_it_loaded_and_its_resume_keeps_the_record(store, tmp_path):
    """The summary names the backbone weights and their sha256 as loaded when the run started
    (publish takes them from there, not from a manifest that may have moved on since), also when
    the run was resumed, which does not load them again."""
    from zoo.config import load_config
    from zoo.engine import train

    overrides = [
        f"model.args.backbone_weights={BACKBONE}",
        "model.args.output_stride=16",
        "data.batch_size=2",
        "data.crop_size=[64, 64]",
        "train.max_steps=2",
        "train.ckpt_every_steps=1",
        "train.eval_every_epochs=0",
        "train.amp_bf16=false",
        "train.channels_last=false",
        f"train.out_dir={tmp_path / 'run'}",
    ]
    expected = {"name": BACKBONE, "sha256": find_weights(BACKBONE).sha256}
    train(load_config(REPO / "configs/camvid/deeplabv3_resnet18.yaml", overrides))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["backbone_weights"] == expected
    for name in ("summary.json", "model.safetensors"):
        (tmp_path / "run" / name).unlink()
    store.manifest.write_text("[]\n")  # the backbone's entry is gone: the resume must not need it
    train(
        load_config(
            REPO / "configs/camvid/deeplabv3_resnet18.yaml",
            [*overrides[:-2], "train.max_steps=3", overrides[-1]],
        ),
        resume=True,
    )
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["backbone_weights"] == expected

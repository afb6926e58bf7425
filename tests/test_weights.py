"""The pretrained-weights machinery on a manifest and weights folder of the test's own.

Every test gets ``resnet20.test`` (random weights, the default for resnet20) in a temporary
manifest that ``ZOO_MANIFEST`` / ``ZOO_WEIGHTS_DIR`` point at; nothing here touches the network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import zoo
import zoo._paths
import zoo._registry as registry
import zoo.readme as readme
import zoo.weights as weights
from zoo.models.deeplab import SegmentationModel
from zoo.models.fcos import FCOS
from zoo.readme import DETAILS_END, DETAILS_START, END, START, render_details_doc, render_readme, render_table
from zoo.weights import (
    ManifestError,
    SeedSpread,
    WeightsError,
    add_entry,
    eval_transforms,
    load_manifest,
    parse_manifest,
    save_manifest,
)

from .conftest import WEIGHTS_META as META
from .conftest import random_state


def same(a: dict, b: dict, skip: tuple[str, ...] = ()) -> bool:
    keys = [k for k in a if not k.startswith(skip)]
    return set(keys) == {k for k in b if not k.startswith(skip)} and all(
        torch.equal(a[k], b[k]) for k in keys
    )


@pytest.fixture
def store(weight_store):
    entry, state = weight_store.add("resnet20.test")
    return SimpleNamespace(
        tmp=weight_store.tmp,
        manifest=weight_store.manifest,
        entry=entry,
        state=state,
        path=weight_store.weights / entry.file,
    )


@pytest.fixture
def spy(monkeypatch):
    """Counts resnet20 builds and safetensors parses, to show a refused file reaches neither."""
    counts = SimpleNamespace(builds=0, parses=0)
    entry = registry.get_entry("resnet20")

    def build(**kwargs):
        counts.builds += 1
        return entry.fn(**kwargs)

    def parse(data, source):
        counts.parses += 1
        return parse_safetensors(data, source)

    parse_safetensors = weights.parse_safetensors
    monkeypatch.setitem(registry._MODELS, "resnet20", dataclasses.replace(entry, fn=build))
    monkeypatch.setattr(weights, "parse_safetensors", parse)
    return counts


def write_manifest(store, **changes) -> None:
    save_manifest([dataclasses.replace(store.entry, **changes)], store.manifest)


# -- loading -----------------------------------------------------------------------------------


def test_default_and_tagged_weights_load_exactly(store):
    assert zoo.list_models(pretrained=True) == ["resnet20.test"]
    for name in ("resnet20", "resnet20.test"):
        model = zoo.create_model(name, pretrained=True)
        assert same(model.state_dict(), store.state)
        assert model.pretrained_weights.name == "resnet20.test"


def test_weights_come_from_the_weights_folder(store, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(WeightsError, match="not in .*elsewhere.* not published on the Hub"):
        zoo.create_model("resnet20", pretrained=True)


def test_no_weights_for_the_architecture_names_close_matches(store):
    with pytest.raises(WeightsError, match=r"no pretrained weights for 'resnet32'.*resnet20\.test"):
        zoo.create_model("resnet32", pretrained=True)
    with pytest.raises(WeightsError, match=r"'resnet20\.tset'.*resnet20\.test"):
        zoo.create_model("resnet20.tset", pretrained=True)


# -- refusals: each before anything is parsed or built ---------------------------------------------


def flip_byte(store):
    data = bytearray(store.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    store.path.write_bytes(bytes(data))


def truncate(store):
    store.path.write_bytes(store.path.read_bytes()[:-100])


def wrong_hash_in_manifest(store):
    write_manifest(store, sha256="ab" * 32)


def missing_file(store):
    store.path.unlink()


@pytest.mark.parametrize(
    "corrupt, expected",
    [
        (flip_byte, r"sha256 expected {sha}, got [0-9a-f]{{64}}"),
        (truncate, r"size expected {size} bytes, got {short}"),
        (wrong_hash_in_manifest, r"sha256 expected (ab){{32}}, got {sha}"),
        (missing_file, r"'resnet20\.test\.safetensors' for resnet20\.test is not in"),
    ],
    ids=["tampered", "truncated", "wrong-manifest-hash", "missing"],
)
def test_refused_before_parsing(store, spy, corrupt, expected):
    corrupt(store)
    pattern = expected.format(
        sha=store.entry.sha256, size=store.entry.size_bytes, short=store.entry.size_bytes - 100
    )
    with pytest.raises(WeightsError, match=pattern) as info:
        zoo.create_model("resnet20", pretrained=True)
    assert corrupt is missing_file or str(store.path) in str(info.value)
    assert (spy.parses, spy.builds) == (0, 0)


class Payload:
    """Unpickling this creates a file: proof that nothing was unpickled is that it does not exist."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_posing_as_weights_is_never_unpickled(store, spy, writer):
    marker = store.tmp / "unpickled"
    payload = {"conv1.weight": torch.zeros(1), "evil": Payload(marker)}
    if writer == "pickle":
        store.path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, store.path)
    # The manifest vouches for these exact bytes, so only the format check stands in the way.
    data = store.path.read_bytes()
    write_manifest(store, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    with pytest.raises(WeightsError, match="not a valid safetensors file.*arbitrary code"):
        zoo.create_model("resnet20", pretrained=True)
    with pytest.raises(WeightsError, match="not a valid safetensors file"):
        zoo.create_model("resnet20", checkpoint_path=str(store.path))  # unverified path: same refusal
    assert not marker.exists()
    assert spy.builds == 0


def test_architecture_change_fails_the_strict_load(store):
    with pytest.raises(
        WeightsError, match=r"(?s)does not fit resnet20 built with \{'attn': 'se'\}.*Missing key"
    ):
        zoo.create_model("resnet20", pretrained=True, attn="se")


def test_arguments_the_weights_were_trained_with_cannot_be_overridden(store):
    add_entry("resnet20.dropout", store.tmp / "trained.safetensors", model_args={"drop_rate": 0.1}, **META)
    assert zoo.create_model("resnet20.dropout", pretrained=True, drop_rate=0.1).drop_rate == 0.1
    with pytest.raises(WeightsError, match=r"drop_rate=0.2 \(trained with 0.1\)"):
        zoo.create_model("resnet20.dropout", pretrained=True, drop_rate=0.2)


# -- explicit files ----------------------------------------------------------------------------------


def test_checkpoint_path_is_verified_when_weights_are_named(store):
    copy = store.tmp / "copy.safetensors"
    copy.write_bytes(store.path.read_bytes())
    model = zoo.create_model("resnet20.test", pretrained=True, checkpoint_path=str(copy))
    assert same(model.state_dict(), store.state)
    other = store.tmp / "other.safetensors"
    save_file(random_state(seed=1), other)
    with pytest.raises(WeightsError, match=f"{other} is not the file the manifest records for resnet20.test"):
        zoo.create_model("resnet20", pretrained=True, checkpoint_path=str(other))


def test_bare_checkpoint_path_loads_any_fitting_safetensors(store):
    other = store.tmp / "other.safetensors"
    state = random_state(seed=1, num_classes=5)
    save_file(state, other)
    model = zoo.create_model("resnet20", checkpoint_path=str(other))  # classes read off the file
    assert model.num_classes == 5 and same(model.state_dict(), state)


# -- adaptation ----------------------------------------------------------------------------------------


def test_new_num_classes_warns_and_reinitialises_the_classifier(store):
    with pytest.warns(UserWarning, match="10 classes, 3 were asked for.*'fc' is newly initialised"):
        model = zoo.create_model("resnet20", pretrained=True, num_classes=3)
    assert model.fc.weight.shape == (3, 64) and model.num_classes == 3
    assert same(model.state_dict(), store.state, skip=("fc.",))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_one_input_channel_sums_the_first_conv(store):
    model = zoo.create_model("resnet20", pretrained=True, in_chans=1)
    assert model.in_chans == 1
    torch.testing.assert_close(model.conv1.weight, store.state["conv1.weight"].sum(1, keepdim=True))
    assert same(model.state_dict(), store.state, skip=("conv1.",))
    assert model.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.fixture
def grey(store):
    """``resnet20.grey``: random 1-channel weights beside the store's 3-channel ``resnet20.test``."""
    state = random_state("resnet20", 1, in_chans=1)
    save_file(state, store.tmp / "grey.safetensors")
    add_entry("resnet20.grey", store.tmp / "grey.safetensors", **{**META, "mean": [0.5], "std": [0.25]})
    return state


@pytest.mark.parametrize(
    "source, src, want, expected",
    [
        ("resnet20.grey", 1, 3, lambda w: torch.cat([w, w, w], 1) / 3),
        ("resnet20.grey", 1, 2, lambda w: torch.cat([w, w], 1) / 2),
        ("resnet20.test", 3, 1, lambda w: w.sum(1, keepdim=True)),
        ("resnet20.test", 3, 6, lambda w: torch.cat([w, w], 1) / 2),
        ("resnet20.test", 3, 2, lambda w: w[:, :2] * 1.5),
    ],
)
def test_first_conv_adapts_from_any_channel_count_to_any_other(store, grey, source, src, want, expected):
    """Summed to one channel; otherwise repeated cyclically and scaled by src/want, so an image
    whose channels copy each other gives the source model's logits."""
    original = zoo.create_model(source, pretrained=True).eval()
    model = zoo.create_model(source, pretrained=True, in_chans=want).eval()
    w = original.conv1.weight
    assert model.in_chans == want and model.conv1.weight.shape == (16, want, 3, 3)
    torch.testing.assert_close(model.conv1.weight, expected(w), rtol=0, atol=0)
    assert same(model.state_dict(), original.state_dict(), skip=("conv1.",))
    if want % src == 0 or want == 1:  # the copies: grey over 3 channels, RGB twice over 6, ...
        base = torch.rand(2, min(src, want), 32, 32)
        with torch.no_grad():
            got = model(base.repeat(1, want // base.shape[1], 1, 1))
            ref = original(base.repeat(1, src // base.shape[1], 1, 1))
        torch.testing.assert_close(got, ref)


@pytest.mark.parametrize(
    "cls, args, first_conv",
    [
        (SegmentationModel, dict(backbone="densenet121", head="fcn"), "features.conv0"),
        (FCOS, dict(backbone="densenet121"), "features.conv0"),
        (SegmentationModel, dict(backbone="resnet18", head="fcn"), "conv1"),
    ],
)
def test_composites_adapt_their_backbones_first_conv(cls, args, first_conv, tmp_path):
    """A composite's first conv is its backbone's, whatever the backbone: in_chans adapts it."""

    def _zoo_test_composite():
        return args

    try:
        registry.register_model(cls, defaults=dict(num_classes=3))(_zoo_test_composite)
        torch.manual_seed(0)
        source = zoo.create_model("_zoo_test_composite")
        assert source.first_conv_name == f"backbone.{first_conv}"
        save_file(source.state_dict(), tmp_path / "composite.safetensors")
        model = zoo.create_model(
            "_zoo_test_composite", checkpoint_path=tmp_path / "composite.safetensors", in_chans=1
        )
    finally:
        registry._MODELS.pop("_zoo_test_composite", None)
    key = f"backbone.{first_conv}.weight"
    assert model.in_chans == 1 and model.get_submodule(f"backbone.{first_conv}").in_channels == 1
    torch.testing.assert_close(model.state_dict()[key], source.state_dict()[key].sum(1, keepdim=True))
    assert same(model.state_dict(), source.state_dict(), skip=(key,))
    try:
        registry.register_model(cls, defaults=dict(num_classes=3))(_zoo_test_composite)
        model = zoo.create_model(
            "_zoo_test_composite", checkpoint_path=tmp_path / "composite.safetensors", in_chans=2
        )
    finally:
        registry._MODELS.pop("_zoo_test_composite", None)
    assert model.get_submodule(f"backbone.{first_conv}").in_channels == 2
    torch.testing.assert_close(model.state_dict()[key], source.state_dict()[key][:, :2] * 1.5)


def test_features_only_keeps_the_pretrained_backbone(store):
    model = zoo.create_model("resnet20", pretrained=True, features_only=True)
    assert same(model.state_dict(), store.state, skip=("fc.",))


# -- the manifest -----------------------------------------------------------------------------------


def entry_dict(store, **changes) -> dict:
    return {**dataclasses.asdict(store.entry), **changes}


def rename(d, old, new):
    d[new] = d.pop(old)
    return [d]


SEEDS = {"metric": "top1", "values": {"0": 91.25, "1": 91.75, "2": 91.5}, "mean": 91.5, "std": 0.25}


def with_seeds(entry: dict, seeds: dict) -> dict:
    return {**entry, "provenance": {**entry["provenance"], "seeds": seeds}}


def test_seed_spread_round_trips_and_is_left_out_when_absent(store):
    entry = with_seeds(entry_dict(store), SEEDS)
    (parsed,) = parse_manifest([entry])
    assert parsed.provenance.seeds == SeedSpread("top1", SEEDS["values"], 91.5, 0.25)
    assert parsed.provenance.seeds == SeedSpread.of("top1", {0: 91.25, 1: 91.75, 2: 91.5})
    save_manifest([parsed])
    assert json.loads(store.manifest.read_text())[0]["provenance"]["seeds"] == SEEDS
    (plain,) = parse_manifest([entry_dict(store)])
    assert plain.provenance.seeds is None
    save_manifest([plain])
    assert "seeds" not in json.loads(store.manifest.read_text())[0]["provenance"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: rename(d, "sha256", "sha265"), r"unknown field 'sha265' \(did you mean 'sha256'\?\)"),
        (lambda d: rename(d, "sha256", "sha265"), r"missing field\(s\) 'sha256'"),
        (lambda d: [{k: v for k, v in d.items() if k != "dataset"}], r"missing field\(s\) 'dataset'"),
        (lambda d: [d, {**d, "name": "resnet20.other"}], r"resnet20 needs exactly one default weight, has 2"),
        (lambda d: [{**d, "default": False}], r"resnet20 needs exactly one default weight, has 0"),
        (lambda d: [d, d], r"resnet20\.test appears twice"),
        (lambda d: [{**d, "metrics": {"top1": "91"}}], r"metrics: expected dict\[str, float\], got"),
        (lambda d: [{**d, "num_params": True}], r"num_params: expected <class 'int'>, got True"),
        (
            lambda d: [{**d, "input": {**d["input"], "crop": 1}}],
            r"entry 0 \(resnet20\.test\)\.input: unknown field",
        ),
        (
            lambda d: [{**d, "name": "resnt20.test"}],
            r"unknown architecture 'resnt20' \(did you mean resnet20",
        ),
        (lambda d: [{**d, "file": "../x.safetensors"}], r"bare '\*\.safetensors' file name"),
        (lambda d: [{**d, "hf_repo_id": "org/x", "hf_revision": "main"}], r"must be a commit sha"),
        (lambda d: [{**d, "model_args": {"in_chans": 1}}], r"must not hold 'in_chans'"),
        (lambda d: {"weights": [d]}, r"expected a JSON list"),
        (lambda d: [with_seeds(d, {**SEEDS, "mean": 92.0})], r"seeds\.mean 92\.0 is not the mean of"),
        (lambda d: [with_seeds(d, {**SEEDS, "std": None})], r"seeds\.std None is not the sample standard"),
        (lambda d: [with_seeds(d, {**SEEDS, "metric": "miou"})], r"seeds\.metric 'miou' is not one of"),
        (lambda d: [with_seeds(d, {**SEEDS, "values": {"0": "x"}})], r"seeds.*values: expected"),
    ],
    ids=[
        "typo-unknown",
        "typo-missing",
        "missing",
        "two-defaults",
        "no-default",
        "duplicate",
        "metric-type",
        "bool-as-int",
        "nested-unknown",
        "unknown-arch",
        "path-in-file",
        "branch-revision",
        "model-args-overlap",
        "not-a-list",
        "seeds-mean",
        "seeds-std",
        "seeds-metric",
        "seeds-type",
    ],
)
def test_manifest_validation(store, make, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest(make(entry_dict(store)))


def test_an_invalid_manifest_file_is_refused_everywhere(store):
    store.manifest.write_text(json.dumps([entry_dict(store, sha265="x")]))
    for call in (load_manifest, lambda: zoo.list_models(pretrained=True)):
        with pytest.raises(ManifestError, match=f"{store.manifest} is invalid:\n  .*unknown field 'sha265'"):
            call()


def test_manifest_round_trips_byte_for_byte(store):
    text = store.manifest.read_text()
    save_manifest(load_manifest())
    assert store.manifest.read_text() == text
    assert '"mean": [0.49, 0.48, 0.45],' in text  # short lists stay on one line


def test_the_manifest_keeps_the_usual_umask(store):
    """Written atomically, but not with tempfile's 0600: 0644 under umask 022, 0640 under 027."""
    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        old = os.umask(umask)
        try:
            save_manifest(load_manifest())
        finally:
            os.umask(old)
        assert store.manifest.stat().st_mode & 0o777 == mode
    assert [p.name for p in store.manifest.parent.glob(".*.tmp")] == []


def test_a_checkout_reads_its_top_level_manifest(monkeypatch):
    # An installed package reads the copy its build put inside it: tests/test_install.py.
    monkeypatch.delenv("ZOO_MANIFEST", raising=False)
    assert weights.manifest_path() == Path(zoo.__file__).parent.parent / "weights_manifest.json"
    assert not (Path(zoo.__file__).parent / "weights_manifest.json").exists()  # one file, no copy
    assert "resnet20.fashion_mnist" in zoo.list_models(pretrained=True)


def test_weights_are_looked_for_in_order(store, tmp_path, monkeypatch):
    """``$ZOO_WEIGHTS_DIR``, the checkout's ``weights/``, the user cache; an explicit path first."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZOO_CACHE_DIR", str(cache))
    checkout = zoo._paths.checkout_root()
    assert weights.local_dirs() == [store.path.parent, checkout / "weights", cache / "weights"]
    assert weights.local_file(store.entry) == store.path
    (cache / "weights").mkdir(parents=True)
    store.path.rename(cache / "weights" / store.entry.file)  # only in the user cache now
    assert weights.local_file(store.entry) == cache / "weights" / store.entry.file
    assert same(zoo.create_model("resnet20", pretrained=True).state_dict(), store.state)
    assert (
        weights.local_file(store.entry, store.tmp / "trained.safetensors")
        == store.tmp / "trained.safetensors"
    )
    monkeypatch.setattr(zoo._paths, "_PACKAGE_DIR", tmp_path / "site-packages" / "zoo")  # installed
    assert weights.local_dirs() == [store.path.parent, cache / "weights"]


def test_an_installed_zoo_does_not_edit_its_own_manifest(store, monkeypatch):
    monkeypatch.delenv("ZOO_MANIFEST", raising=False)
    monkeypatch.setattr(zoo._paths, "_PACKAGE_DIR", store.tmp / "site-packages" / "zoo")
    with pytest.raises(ValueError, match="installed, not run from a checkout: name the manifest"):
        add_entry("resnet20.new", store.tmp / "trained.safetensors", **META)
    add_entry("resnet20.new", store.tmp / "trained.safetensors", manifest=store.manifest, **META)
    assert [w.name for w in load_manifest(store.manifest)] == ["resnet20.new", "resnet20.test"]


# -- recording weights ---------------------------------------------------------------------------------


def test_add_entry_computes_what_it_can(store):
    e = store.entry
    data = store.path.read_bytes()
    assert (e.sha256, e.size_bytes) == (hashlib.sha256(data).hexdigest(), len(data))
    assert e.num_params == sum(p.numel() for p in zoo.create_model("resnet20").parameters())
    assert (e.dtype, e.num_classes, e.input.in_chans, e.input.input_size) == ("float32", 10, 3, [32, 32])
    assert e.default and e.task == "classification" and e.hf_revision == ""
    assert same(load_file(store.path), store.state)


def test_a_new_default_replaces_the_old_one(store):
    second = add_entry("resnet20.second", store.tmp / "trained.safetensors", default=True, **META)
    assert second.default
    assert {w.name: w.default for w in load_manifest()} == {"resnet20.second": True, "resnet20.test": False}
    with pytest.raises(ValueError, match="already in the manifest; pass replace=True"):
        add_entry("resnet20.second", store.tmp / "trained.safetensors", **META)
    add_entry("resnet20.second", store.tmp / "trained.safetensors", replace=True, **{**META, "split": "val"})
    assert weights.find_weights("resnet20").split == "val"


def test_cli_add_and_verify(store, capsys):
    state = random_state("resnet32", in_chans=1, num_classes=4)
    src = store.tmp / "gray.safetensors"
    save_file(state, src)
    labels = store.tmp / "labels.txt"
    labels.write_text("a\nb\nc\nd\n")
    weights.main(
        ["add", "resnet32.gray", str(src), "--dataset", "fashion_mnist", "--split", "test"]
        + ["--metrics", '{"top1": 90}', "--mean", "0.28", "--std", "0.35", "--input-size", "28", "28"]
        + ["--config", "c.yaml", "--command", "python train.py", "--eval-command", "python eval.py"]
        + ["--labels-file", str(labels)]
    )
    w = weights.find_weights("resnet32")
    assert (w.num_classes, w.input.in_chans, w.input.input_size, w.label_names) == (
        4,
        1,
        [28, 28],
        list("abcd"),
    )
    weights.main(["verify"])
    assert "ok  resnet32.gray" in capsys.readouterr().out


def test_cli_add_edits_the_paths_it_is_given(store, monkeypatch, capsys):
    monkeypatch.delenv("ZOO_MANIFEST")
    monkeypatch.delenv("ZOO_WEIGHTS_DIR")
    other, folder = store.tmp / "other.json", store.tmp / "other_weights"
    other.write_text("[]\n")
    weights.main(
        ["add", "resnet20.other", str(store.tmp / "trained.safetensors"), "--dataset", "cifar10"]
        + ["--split", "test", "--metrics", '{"top1": 90}', "--mean", "0.5", "0.5", "0.5"]
        + ["--std", "0.2", "0.2", "0.2", "--config", "c.yaml", "--command", "python train.py"]
        + ["--eval-command", "python eval.py", "--manifest", str(other), "--weights-dir", str(folder)]
    )
    assert f"to {other}" in capsys.readouterr().out
    assert [w.name for w in load_manifest(other)] == ["resnet20.other"]
    assert (folder / "resnet20.other.safetensors").read_bytes() == (
        store.tmp / "trained.safetensors"
    ).read_bytes()
    assert "resnet20.other" not in zoo.list_models(pretrained=True)  # the packaged manifest is untouched


def test_verify_catches_a_wrong_parameter_count(store):
    write_manifest(store, num_params=store.entry.num_params + 1)
    with pytest.raises(WeightsError, match=f"num_params is {store.entry.num_params}, the manifest says"):
        weights.verify_entry(load_manifest()[0])


def vouch_for(store, state: dict) -> None:
    """Put ``state`` in the store's file and record its hash and size: the manifest vouches for it."""
    save_file(state, store.path)
    data = store.path.read_bytes()
    write_manifest(store, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


@pytest.mark.parametrize(
    "key, dtype, expected",
    [
        ("conv1.weight", torch.int32, "conv1.weight is torch.int32, the model's is torch.float32"),
        ("bn1.running_var", torch.bool, "bn1.running_var is torch.bool, the model's is torch.float32"),
        (
            "bn1.num_batches_tracked",
            torch.float32,
            "num_batches_tracked is torch.float32, the model's is torch.int64",
        ),
    ],
)
def test_a_vouched_file_with_a_wrong_dtype_is_refused(store, key, dtype, expected):
    state = dict(store.state)
    state[key] = state[key].to(dtype)
    vouch_for(store, state)
    for load in (
        lambda: zoo.create_model("resnet20", pretrained=True),
        lambda: weights.verify_entry(load_manifest()[0]),
    ):
        with pytest.raises(WeightsError, match="wrong dtype") as err:
            load()
        assert expected in str(err.value) and str(store.path) in str(err.value)


def test_half_precision_weights_still_load_into_a_float_model(store):
    half = {k: v.half() if v.is_floating_point() else v for k, v in store.state.items()}
    vouch_for(store, half)
    model = zoo.create_model("resnet20", pretrained=True)
    assert model.conv1.weight.dtype == torch.float32
    torch.testing.assert_close(model.conv1.weight, half["conv1.weight"].float(), rtol=0, atol=0)


def test_a_manifest_that_is_not_utf8_names_itself(store):
    store.manifest.write_bytes(b'[{"name": "resnet20.t\xe9st"}]')
    with pytest.raises(
        ManifestError, match=f"{store.manifest}: it is not UTF-8 text \\(byte 0xe9 at offset 21\\)"
    ):
        load_manifest()


def test_cli_verify_reports_every_entry_and_fails(weight_store, store, capsys):
    other, _ = weight_store.add("resnet20.other", seed=1)
    store.path.write_bytes(store.path.read_bytes()[:-1])  # resnet20.test: truncated
    (store.tmp / "weights" / other.file).unlink()  # resnet20.other: missing
    assert weights.main(["verify"]) == 1
    captured = capsys.readouterr()
    assert "FAIL resnet20.other: weights file 'resnet20.other.safetensors'" in captured.out
    assert f"FAIL resnet20.test: {store.path} is not the file" in captured.out
    assert "2 of the weights failed: resnet20.other, resnet20.test" in captured.err
    assert weights.main(["verify", "resnet20.test"]) == 1
    assert "resnet20.other" not in capsys.readouterr().out


def test_cli_verify_of_an_unknown_name_names_close_matches(store, capsys):
    with pytest.raises(SystemExit) as exit:
        weights.main(["verify", "resnet20.tset"])
    assert exit.value.code == 2
    assert "'resnet20.tset' is not in the manifest (close matches: resnet20.test" in capsys.readouterr().err
    assert weights.main(["verify", "resnet20.test"]) == 0 and weights.main(["verify", "resnet20"]) == 0
    assert "ok  resnet20.test" in capsys.readouterr().out


# -- eval transforms and the README table ---------------------------------------------------------------


def test_eval_transforms_normalise_as_recorded(store):
    image = Image.new("RGB", (32, 32), (255, 0, 128))
    for source in ("resnet20", zoo.create_model("resnet20", pretrained=True)):
        x = eval_transforms(source)(image)
        expected = (torch.tensor([1.0, 0.0, 128 / 255]) - torch.tensor(META["mean"])) / torch.tensor(
            META["std"]
        )
        assert x.shape == (3, 32, 32)
        torch.testing.assert_close(x[:, 5, 5], expected)


def test_eval_transforms_resize_and_crop(store):
    add_entry("resnet20.big", store.tmp / "trained.safetensors", resize_size=36, **META)
    x = eval_transforms("resnet20.big")(Image.new("RGB", (72, 50)))
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32


def test_readme_table_follows_the_manifest(store):
    text = f"# zoo\n\n{START}\nstale\n{END}\n\nmore\n"
    new = render_readme(text, load_manifest())
    assert "stale" not in new and new.endswith(f"{END}\n\nmore\n")
    assert "| `resnet20.test` (default) | cifar10 (test) | top1 91.25, top5 99.5 | 0.27M | 3x32x32 |" in new
    assert render_readme(new, load_manifest()) == new
    details = render_details_doc(f"{DETAILS_START}\n{DETAILS_END}\n", load_manifest())
    assert "- train: `python train.py configs/resnet20_cifar10.yaml`" in details
    assert render_table([]) == "_No published weights yet._"
    with pytest.raises(ValueError, match="needs the markers"):
        render_readme("# zoo\n", [])


def test_readme_cli_updates_then_checks(store, tmp_path):
    path = tmp_path / "README.md"
    path.write_text(f"# zoo\n{START}\n{END}\n")
    with pytest.raises(SystemExit, match="out of date"):
        readme.main(["--readme", str(path), "--check", "--details", "-"])
    readme.main(["--readme", str(path), "--details", "-"])
    readme.main(["--readme", str(path), "--check", "--details", "-"])
    assert "`resnet20.test` (default)" in path.read_text()

"""The manifest (the top-level weights_manifest.json, shipped inside the package) is true: every claim is
re-derived from the repository's weight files.

Each check here is done directly (hashlib, safetensors, the model built from its arguments),
not through zoo.weights, so a bug there cannot hide a false manifest.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import safetensors.torch
import torch

import zoo
from zoo.readme import END, START, render_details_doc, render_readme
from zoo.weights import eval_transforms, find_weights, load_manifest

from .conftest import REPO, num_params

MANIFEST = REPO / "weights_manifest.json"
README = REPO / "README.md"
# Names from the raw JSON, so an invalid manifest fails test_manifest_is_valid, not collection.
_RAW = json.loads(MANIFEST.read_text(encoding="utf-8"))
NAMES = [
    item.get("name", f"entry {i}") if isinstance(item, dict) else f"entry {i}" for i, item in enumerate(_RAW)
]


def test_manifest_is_valid():
    assert [w.name for w in load_manifest(MANIFEST)] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_entry_is_true(name, monkeypatch):
    monkeypatch.setenv("ZOO_MANIFEST", str(MANIFEST))
    w = find_weights(name, load_manifest(MANIFEST))
    path = REPO / "weights" / w.file
    assert path.is_file(), f"{name}: weights file {path} is missing"
    data = path.read_bytes()
    assert len(data) == w.size_bytes, f"{name}: {path} has {len(data)} bytes, manifest says {w.size_bytes}"
    assert hashlib.sha256(data).hexdigest() == w.sha256, f"{name}: sha256 of {path} differs from the manifest"
    state = safetensors.torch.load(data)
    assert {str(t.dtype) for t in state.values() if t.is_floating_point()} == {f"torch.{w.dtype}"}

    model = zoo.create_model(w.arch, num_classes=w.num_classes, in_chans=w.input.in_chans, **w.model_args)
    model.load_state_dict(state, strict=True)
    assert num_params(model) == w.num_params, f"{name}: num_params is wrong"
    assert (REPO / w.provenance.config).is_file(), f"{name}: recipe {w.provenance.config} is not in the repo"

    loaded = zoo.create_model(w.name, pretrained=True).state_dict()  # and through the public path
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    x = eval_transforms(w.name)(torch.zeros(w.input.in_chans, *w.input.input_size, dtype=torch.uint8))
    assert x.shape == (w.input.in_chans, *w.input.input_size)


def test_readme_table_matches_the_manifest():
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        pytest.fail(
            f"README.md has no model table: add the lines {START} and {END}, then run python -m zoo.readme"
        )
    expected = render_readme(text, load_manifest(MANIFEST))
    assert text == expected, "README.md's model table is out of date: run python -m zoo.readme"


HEADLINE = "wide_resnet14_2.fashion_mnist"


def test_headline_weight_meets_the_claim_the_readme_makes():
    """Issue 11's headline: at most 1M parameters, at least 95.0% top-1 (single view) on the
    Fashion-MNIST test set, at most 90 minutes of training; the README quotes the manifest."""
    w = find_weights(HEADLINE, load_manifest(MANIFEST))
    assert w.num_params <= 1_000_000
    assert w.metrics["top1"] >= 95.0
    assert w.provenance.train_wall_time_s <= 90 * 60
    text = README.read_text(encoding="utf-8")
    assert "### The headline" in text, "README.md has no '### The headline' section for the headline weight"
    section = text.split("### The headline", 1)[1].split("\n## ", 1)[0]
    for quoted in (
        f"{w.metrics['top1']:.2f}% top-1",
        f"{w.metrics['top1_hflip']:.2f}%",
        f"{w.provenance.train_wall_time_s / 60:.1f} minutes",
        f"{w.num_params // 1000}K parameters",
    ):
        assert quoted in section, f"the README's headline section does not say {quoted!r} (the manifest does)"


def test_weights_details_page_matches_the_manifest():
    """docs/weights.md (per weight: machine, seeds, licence, commands) is generated from the manifest."""
    path = REPO / "docs" / "weights.md"
    text = path.read_text(encoding="utf-8")
    assert text == render_details_doc(text, load_manifest(MANIFEST)), (
        "docs/weights.md is out of date: run python -m zoo.readme"
    )

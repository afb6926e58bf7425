"""Pretrained weights on this machine: finding, verifying, loading and adapting them.

The manifest (the top-level ``weights_manifest.json``, shipped inside the package: typed, validated entries) lives in
``zoo._manifest``; its names are re-exported here. Downloading from the Hub sits one layer up
(``zoo.hub``), and ``create_model(name, pretrained=True)`` on top of both:
1. the file is an explicit ``checkpoint_path``, else the first of ``local_dirs()`` holding it
   (``$ZOO_WEIGHTS_DIR``, the checkout's ``weights/``, the user cache's ``weights/``), else
   the Hub repo and commit the entry was published to;
2. its size and sha256 are checked against the manifest before anything parses it;
3. it is parsed as safetensors, never as pickle (unpickling a file can run arbitrary code);
4. a new model is built with the weights' own ``num_classes``/``in_chans``/``model_args``,
   loaded ``strict=True``, then adapted (in ``build_adapted``, the one place that does) to the
   ``num_classes``/``in_chans`` the caller asked for.

``python -m zoo.weights add NAME FILE [--manifest PATH] [--weights-dir DIR]`` records a new
weight (hash, size, dtype, parameter count and shapes are computed from the file) in the
manifest and weights folder it is given (default: the checkout's), with ``--backbone-weights
NAME`` the classifier weights its backbone started from; ``python -m zoo.weights
verify`` re-checks every entry whose file is on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn as nn
from safetensors import SafetensorError
from torchvision.transforms import v2

from ._io import atomic_write
from ._manifest import (
    FITS,
    INTERPOLATIONS,
    PACKAGED_MANIFEST,
    BackboneSource,
    InputSpec,
    ManifestError,
    Provenance,
    SeedSpread,
    WeightsEntry,
    load_manifest,
    manifest_path,
    parse_manifest,
    save_manifest,
)
from ._paths import checkout_root, user_cache_dir
from ._registry import ModelEntry, close_matches, get_entry, split_name

__all__ = [
    "BackboneSource",
    "InputSpec",
    "ManifestError",
    "Provenance",
    "SeedSpread",
    "WeightsEntry",
    "WeightsError",
    "adapt_first_conv",
    "add_entry",
    "build_adapted",
    "build_unvouched",
    "eval_transforms",
    "find_weights",
    "load_manifest",
    "local_dirs",
    "local_file",
    "manifest_path",
    "manifest_to_edit",
    "parse_manifest",
    "read_unverified",
    "read_verified",
    "save_manifest",
    "verify_entry",
    "weights_dir",
]


class WeightsError(RuntimeError):
    """Weights that cannot be found, do not match the manifest, or do not fit the model."""


def local_dirs() -> list[Path]:
    """The folders searched for weight files, in order: ``$ZOO_WEIGHTS_DIR``, the checkout's
    ``weights/`` (when zoo runs from one), the user cache's ``weights/``."""
    root = checkout_root()
    dirs = [Path(os.environ["ZOO_WEIGHTS_DIR"])] if os.environ.get("ZOO_WEIGHTS_DIR") else []
    return dirs + ([root / "weights"] if root else []) + [user_cache_dir() / "weights"]


def weights_dir() -> Path:
    """Where new weights are recorded by default: the first of ``local_dirs()``."""
    return local_dirs()[0]


def find_weights(name: str, entries: list[WeightsEntry] | None = None) -> WeightsEntry:
    """The entry for ``arch.tag``, or the default entry for a bare ``arch``."""
    entries = load_manifest() if entries is None else entries
    arch, tag = split_name(name)
    for e in entries:
        if (e.name == name) if tag else (e.arch == arch and e.default):
            return e
    names = [e.name for e in entries]
    near_archs = close_matches(arch, {e.arch for e in entries})
    near = [n for n in names if split_name(n)[0] in near_archs] or close_matches(name, names)
    hint = f"close matches: {', '.join(near)}" if near else f"{len(names)} weights in all"
    raise WeightsError(f"no pretrained weights for {name!r} ({hint}; see zoo.list_models(pretrained=True))")


# -- files: where they are, whether they are what the manifest says ---------------------------


def local_file(w: WeightsEntry, checkpoint_path: str | Path | None = None) -> Path | None:
    """``w``'s file on this machine: the explicit path, else the first of ``local_dirs()`` that
    holds it; ``None`` when none does (``zoo.hub.resolve_file`` then asks the Hub)."""
    if checkpoint_path is not None:
        if not Path(checkpoint_path).is_file():
            raise WeightsError(f"checkpoint_path {checkpoint_path} does not exist")
        return Path(checkpoint_path)
    return next((d / w.file for d in local_dirs() if (d / w.file).is_file()), None)


def not_found_error(w: WeightsEntry) -> WeightsError:
    return WeightsError(
        f"weights file {w.file!r} for {w.name} is not in {', '.join(map(str, local_dirs()))} "
        f"(ZOO_WEIGHTS_DIR names another folder) and {w.name} is not published on the Hub "
        f"(its hf_repo_id is empty)"
    )


def read_verified(path: str | Path, w: WeightsEntry) -> dict[str, torch.Tensor]:
    """The tensors in ``path``, once its bytes are exactly the ones the manifest records.

    The bytes are read once, hashed, and those same bytes parsed, so the file cannot change
    between the check and the load.
    """
    data = Path(path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != w.sha256 or len(data) != w.size_bytes:
        raise WeightsError(
            f"{path} is not the file the manifest records for {w.name}: sha256 expected {w.sha256}, "
            f"got {actual}; size expected {w.size_bytes} bytes, got {len(data)}. It is corrupt, "
            f"truncated or replaced: delete it and fetch it again."
        )
    return parse_safetensors(data, path)


def read_unverified(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors in a file nothing vouches for: still safetensors only."""
    if not Path(path).is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    return parse_safetensors(Path(path).read_bytes(), path)


def parse_safetensors(data: bytes, source: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file's bytes; anything else is a ``WeightsError`` naming
    ``source`` (and, for a torch.save file or a pickle, saying that is what it is)."""
    try:
        return safetensors.torch.load(data)
    except SafetensorError as e:
        what = pickled_kind(data)
        raise WeightsError(
            f"{source} is not a valid safetensors file ({f'it is {what}' if what else e}). zoo reads "
            f"safetensors only: pickled checkpoints (.pt, .pth, .bin) are refused because loading one "
            f"can run arbitrary code."
        ) from None


def pickled_kind(data: bytes) -> str | None:
    """What a file's first bytes say it is, when it is something ``torch.save`` or ``pickle`` wrote."""
    if data[:4] == b"PK\x03\x04":
        return "a zip archive, as torch.save writes"
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle"
    return None


# -- building models from weights ------------------------------------------------------------


def build_unvouched(entry: ModelEntry, state: dict, kwargs: dict, source: str) -> nn.Module:
    """Load a state dict of unknown shape: read its classes and input channels off the tensors.

    A throwaway model built as asked tells which tensors hold the first conv and the classifier.
    """
    probe = entry.fn(**kwargs)
    conv_key, head_key = f"{probe.first_conv_name}.weight", f"{probe.classifier_name}.weight"
    if conv_key not in state:
        raise WeightsError(f"{source} has no {conv_key!r}: it is not a state dict for {entry.name}")
    src_classes = state[head_key].shape[0] if head_key in state else 0
    return build_adapted(entry, state, source, src_classes, state[conv_key].shape[1], {}, kwargs)


def build_adapted(
    entry: ModelEntry,
    state: dict[str, torch.Tensor],
    source: str,
    src_classes: int,
    src_chans: int,
    model_args: dict[str, Any],
    kwargs: dict[str, Any],
) -> nn.Module:
    """The one place weights meet a model: build it as the weights were trained, load strictly,
    then adapt to the ``num_classes`` / ``in_chans`` in ``kwargs`` (as timm's ``load_pretrained``).

    The model is always new, so a load that fails leaves no half-loaded model behind.
    """
    kwargs = dict(kwargs)
    want_classes = kwargs.pop("num_classes", src_classes)
    want_chans = kwargs.pop("in_chans", src_chans)
    clash = [
        f"{k}={kwargs[k]!r} (trained with {v!r})" for k, v in model_args.items() if kwargs.get(k, v) != v
    ]
    if clash:
        raise WeightsError(f"{source} cannot be loaded with {', '.join(clash)}")
    model = entry.fn(**{**model_args, **kwargs}, num_classes=src_classes, in_chans=want_chans)
    check_dtypes(state, model.state_dict(), source)
    if want_chans != src_chans:
        key = f"{model.first_conv_name}.weight"
        state = {**state, key: adapt_first_conv(state[key], want_chans)}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(
            f"{source} does not fit {entry.name} built with {kwargs or 'defaults'}: {e}"
        ) from None
    if want_classes != src_classes:
        if want_classes > 0:  # 0 asks for no head at all: nothing to warn about
            warnings.warn(
                f"{source} has {src_classes} classes, {want_classes} were asked for: the classifier "
                f"{model.classifier_name!r} is newly initialised and needs training",
                stacklevel=4,
            )
        model.reset_classifier(want_classes)
    return model


def check_dtypes(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], source: str) -> None:
    """Every tensor of the right kind for the model's: a floating-point tensor where the model
    holds one (any precision: it is cast on load), exactly the model's dtype otherwise (an
    integer buffer such as BatchNorm's ``num_batches_tracked``). ``load_state_dict`` would cast
    an int32 tensor into float weights without a word."""
    wrong = [
        f"{k} is {t.dtype}, the model's is {expected[k].dtype}"
        for k, t in state.items()
        if k in expected
        and (not t.is_floating_point() if expected[k].is_floating_point() else t.dtype != expected[k].dtype)
    ]
    if wrong:
        raise WeightsError(f"{source} holds tensors of the wrong dtype: {'; '.join(wrong)}")


def adapt_first_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A first conv's ``(out, src, kh, kw)`` weight adapted to take ``in_chans`` channels.

    The rule keeps the response to an image whose channels are copies of each other:
    - to 1 channel: the filters are summed over the source channels, so a grey image gives
      what the source model gave for that grey replicated over its channels;
    - to M > 1 channels: the source channels are repeated cyclically up to M (channel ``c``
      takes source channel ``c % src``) and scaled by ``src / M``. From 1 channel this is
      repeat-and-divide-by-M (a grey image replicated over M channels gives the original
      response); from N to a multiple of N, the N-channel image repeated gives the original
      response; otherwise (3 -> 2, say) it is a start for fine-tuning, as timm does for RGB.
    """
    if weight.ndim != 4:
        raise WeightsError(f"a first conv's weight is (out, in, kh, kw), got shape {tuple(weight.shape)}")
    src = weight.shape[1]
    if in_chans == src:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    index = torch.arange(in_chans, device=weight.device) % src
    g = math.gcd(src, in_chans)  # src/M as a reduced fraction: 1 -> 3 divides by 3, exactly
    return weight.index_select(1, index) * (src // g) / (in_chans // g)


def eval_transforms(weights: str | WeightsEntry | nn.Module):
    """The eval preprocessing recorded with the weights (a name, an entry, or a pretrained model)."""
    if isinstance(weights, nn.Module):
        if not hasattr(weights, "pretrained_weights"):
            raise ValueError(f"{type(weights).__name__} was not created with pretrained weights")
        weights = weights.pretrained_weights
    w = find_weights(weights) if isinstance(weights, str) else weights
    spec = w.input
    steps = [v2.ToImage()]
    mode = v2.InterpolationMode(spec.interpolation)
    if spec.fit == "squash":  # the weights saw squashed photos: both sides to the input size
        steps.append(v2.Resize(spec.input_size, interpolation=mode, antialias=True))
    elif spec.resize_size is not None:  # resize while still uint8, as torchvision's presets do
        steps += [
            v2.Resize(spec.resize_size, interpolation=mode, antialias=True),
            v2.CenterCrop(spec.input_size),
        ]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(spec.mean, spec.std)]
    return v2.Compose(steps)


# -- recording and re-checking weights --------------------------------------------------------


def verify_entry(w: WeightsEntry, path: str | Path | None = None) -> nn.Module:
    """Re-derive everything the entry claims from its file (``path``, else the local one); return
    the loaded model."""
    path = path or local_file(w)
    if path is None:
        raise (
            not_found_error(w)
            if not w.hf_repo_id
            else WeightsError(
                f"{w.name}: no local file in {', '.join(map(str, local_dirs()))}; it is published on "
                f"the Hub ({w.hf_repo_id}), where create_model(..., pretrained=True) fetches and verifies it"
            )
        )
    state = read_verified(path, w)
    source = f"{w.name} ({path})"
    model = build_adapted(get_entry(w.arch), state, source, w.num_classes, w.input.in_chans, w.model_args, {})
    claims = {"num_params": w.num_params, "dtype": w.dtype}
    actual = {"num_params": sum(p.numel() for p in model.parameters()), "dtype": _float_dtype(state)}
    wrong = [f"{k} is {actual[k]}, the manifest says {claims[k]}" for k in claims if actual[k] != claims[k]]
    if wrong:
        raise WeightsError(f"{w.name}: {'; '.join(wrong)}")
    return model


def _float_dtype(state: dict[str, torch.Tensor]) -> str:
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in state.values() if t.is_floating_point()})
    return "+".join(dtypes)


def manifest_to_edit(manifest: str | Path | None) -> Path:
    """The manifest a tool that records weights edits: ``manifest``, else ``manifest_path()``,
    which must not be the one inside an installed (not a checkout's) package."""
    path = Path(manifest or manifest_path())
    if checkout_root() is None and path.resolve() == PACKAGED_MANIFEST:
        raise ValueError(
            "zoo is installed, not run from a checkout: name the manifest to edit "
            "(--manifest, manifest= or ZOO_MANIFEST), not the installed package's own"
        )
    return path


def add_entry(
    name: str,
    weights_file: str | Path,
    *,
    dataset: str,
    split: str,
    metrics: dict[str, float],
    mean: list[float],
    std: list[float],
    provenance: Provenance,
    input_size: list[int] | None = None,
    interpolation: str = "bilinear",
    resize_size: int | None = None,
    fit: str = "crop",
    label_names: list[str] = (),
    model_args: dict[str, Any] | None = None,
    license: str = "mit",
    default: bool | None = None,
    replace: bool = False,
    manifest: str | Path | None = None,
    weights_folder: str | Path | None = None,
) -> WeightsEntry:
    """Record a trained weight: copy it into ``weights_folder`` and add its entry to ``manifest``.

    The two paths it edits default to ``manifest_path()`` and ``weights_dir()`` (in a checkout:
    its manifest and ``weights/``); an installed zoo has no checkout, so there they must be
    given (or named by ``ZOO_MANIFEST`` / ``ZOO_WEIGHTS_DIR``). Hash, size, dtype, parameter
    count, ``num_classes`` and ``in_chans`` come from the file (which must load strictly).
    ``input_size`` defaults to the architecture's; ``default`` to True for an architecture's
    first weight. Making a new default clears the old one. ``provenance`` is how the weight was
    made; its empty ``git_commit`` becomes the HEAD of the repository holding the manifest (pass
    the commit training ran at if it differs), and its ``backbone_weights`` must be those the
    file's backbone architecture takes (``backbone_source`` makes one from a manifest name).
    """
    manifest = manifest_to_edit(manifest)
    weights_folder = Path(weights_folder or weights_dir())
    arch, tag = split_name(name)
    if not tag:
        raise ValueError(f"name must be 'arch.tag', got {name!r}")
    entry, model_args = get_entry(arch), dict(model_args or {})
    if "backbone_weights" in model_args:
        raise ValueError(
            f"{name}: model_args must not hold backbone_weights (where the backbone started is not "
            "an architecture argument): pass backbone_weights= (--backbone-weights) instead"
        )
    data = Path(weights_file).read_bytes()  # read once: the bytes hashed are the bytes copied
    state = parse_safetensors(data, weights_file)
    model = build_unvouched(entry, state, model_args, source=str(weights_file))
    entries = load_manifest(manifest)
    backbone_weights = provenance.backbone_weights
    if backbone_weights is not None:
        backbone = getattr(model, "backbone_arch", "")
        source_arch = split_name(backbone_weights.name)[0]
        if not backbone:
            raise ValueError(f"{name}: {arch} is not built on a backbone, so it has no backbone_weights")
        if not backbone_weights.name.startswith("hf-hub:") and source_arch != backbone:
            raise ValueError(
                f"{name}: backbone_weights {backbone_weights.name} are {source_arch} weights, "
                f"{arch}'s backbone is {backbone}"
            )
    if any(e.name == name for e in entries) and not replace:
        raise ValueError(f"{name} is already in the manifest; pass replace=True (--replace) to update it")
    others = [e for e in entries if e.name != name]
    if default is None:
        default = not any(e.arch == arch and e.default for e in others)
    if default:
        others = [dataclasses.replace(e, default=False) if e.arch == arch else e for e in others]
    spec = InputSpec(
        in_chans=model.in_chans,
        input_size=list(input_size or entry.input_size[1:]),
        mean=[float(m) for m in mean],
        std=[float(s) for s in std],
        interpolation=interpolation,
        resize_size=resize_size,
        fit=fit,
    )
    new = WeightsEntry(
        name=name,
        default=default,
        file=f"{name}.safetensors",
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        dtype=_float_dtype(state),
        num_params=sum(p.numel() for p in model.parameters()),
        task=entry.task,
        dataset=dataset,
        split=split,
        metrics={k: float(v) for k, v in metrics.items()},
        num_classes=model.num_classes,
        label_names=list(label_names),
        input=spec,
        model_args=model_args,
        provenance=dataclasses.replace(
            provenance,
            train_wall_time_s=float(provenance.train_wall_time_s),
            git_commit=provenance.git_commit or _git_head(manifest.parent),
        ),
        license=license,
        hf_repo_id="",
        hf_revision="",
    )
    parse_manifest([dataclasses.asdict(e) for e in [*others, new]], source="the manifest with " + name)
    target = weights_folder / new.file  # copied only once the new manifest is known to be valid
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_bytes() != data:
        atomic_write(target, data)  # a kill mid-copy leaves the old file whole
    save_manifest([*others, new], manifest)
    return new


def backbone_source(name: str, entries: list[WeightsEntry]) -> BackboneSource:
    """A manifest weight as a ``BackboneSource``: its name and the sha256 recorded for it."""
    if name.startswith("hf-hub:"):
        raise ValueError(
            f"backbone weights {name!r} are not in the manifest, so their sha256 must be given: "
            "BackboneSource(name, sha256) (--backbone-sha256), the sha256 that "
            "create_model(..., backbone_weights=...) recorded in model.backbone_weights"
        )
    w = find_weights(name, entries)
    return BackboneSource(w.name, w.sha256)


def _git_head(folder: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True)
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def verify_all(parser: argparse.ArgumentParser, entries: list[WeightsEntry], names: list[str]) -> int:
    """Verify the entries named (``arch.tag``, or an ``arch`` for all its tags; default: all),
    reporting every one; 1 when any failed. A name the manifest does not hold is an error."""
    known = {e.name for e in entries} | {e.arch for e in entries}
    for n in names:
        if n not in known:
            near = close_matches(n, known)
            hint = f"close matches: {', '.join(near)}" if near else f"it lists {len(entries)} weights"
            parser.error(f"{n!r} is not in the manifest ({hint})")
    failed = []
    for w in entries:
        if names and w.name not in names and w.arch not in names:
            continue
        try:
            verify_entry(w)
        except (WeightsError, ValueError, TypeError, OSError) as e:
            failed.append(w.name)
            print(f"FAIL {w.name}: {e}", flush=True)
        else:
            print(f"ok  {w.name}", flush=True)
    if failed:
        print(f"{len(failed)} of the weights failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.weights", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command_name", required=True)
    add = commands.add_parser("add", help="record a trained weight file in the manifest")
    add.add_argument("name", help="arch.tag")
    add.add_argument("file", help="a safetensors state dict")
    add.add_argument("--dataset", required=True)
    add.add_argument("--split", required=True, help="the split the metrics were measured on")
    add.add_argument("--metrics", type=json.loads, required=True, help="JSON, e.g. '{\"top1\": 93.1}'")
    add.add_argument("--mean", type=float, nargs="+", required=True)
    add.add_argument("--std", type=float, nargs="+", required=True)
    add.add_argument("--config", required=True, help="the YAML recipe")
    add.add_argument("--command", required=True, help="the exact training command")
    add.add_argument("--eval-command", required=True, help="the exact command that gave the metrics")
    add.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"))
    add.add_argument("--interpolation", default="bilinear", choices=INTERPOLATIONS)
    add.add_argument("--resize-size", type=int, help="resize the shorter side, then center-crop")
    add.add_argument(
        "--fit",
        default="crop",
        choices=FITS,
        help="squash: resize any picture to the input size, aspect not kept (weights trained on squashed images)",
    )
    add.add_argument("--labels-file", help="class names, one a line, in class-index order")
    add.add_argument("--model-args", type=json.loads, default={}, help="JSON, e.g. '{\"img_size\": 28}'")
    add.add_argument("--train-wall-time-s", type=float, default=0.0)
    add.add_argument("--hardware", default="")
    add.add_argument("--git-commit", help="the commit training ran at (default: HEAD)")
    add.add_argument("--license", default="mit")
    add.add_argument("--default", action=argparse.BooleanOptionalAction, default=None)
    add.add_argument(
        "--backbone-weights",
        metavar="NAME",
        help="the weights the backbone started from: a manifest name (its sha256 is looked up) or hf-hub:ORG/REPO",
    )
    add.add_argument(
        "--backbone-sha256", help="the sha256 of hf-hub backbone weights (model.backbone_weights)"
    )
    add.add_argument("--replace", action="store_true", help="update an existing entry")
    add.add_argument("--manifest", help="the manifest to edit (default: $ZOO_MANIFEST, else the checkout's)")
    add.add_argument(
        "--weights-dir",
        dest="weights_folder",
        help="copy the file here (default: $ZOO_WEIGHTS_DIR, else the checkout's weights/)",
    )
    verify = commands.add_parser("verify", help="re-check files, hashes, parameter counts and strict loads")
    verify.add_argument("names", nargs="*", help="arch.tag names (default: all)")
    verify.add_argument(
        "--manifest", help="default: $ZOO_MANIFEST, else the checkout's, else the one shipped with zoo"
    )
    args = vars(parser.parse_args(argv))
    if args.pop("command_name") == "verify":
        return verify_all(parser, load_manifest(args["manifest"]), args["names"])
    labels_file = args.pop("labels_file")
    manifest = args["manifest"] or manifest_path()
    backbone, backbone_sha256 = args.pop("backbone_weights"), args.pop("backbone_sha256")
    if (backbone_sha256 is not None) != (backbone or "").startswith("hf-hub:"):
        parser.error("--backbone-sha256 goes with --backbone-weights hf-hub:ORG/REPO, and only with it")
    if backbone_sha256 is not None:
        backbone = BackboneSource(backbone, backbone_sha256)
    elif backbone:
        backbone = backbone_source(backbone, load_manifest(manifest))
    args["provenance"] = Provenance(
        **{f: args.pop(f) for f in ("config", "command", "eval_command", "train_wall_time_s", "hardware")},
        git_commit=args.pop("git_commit") or "",
        backbone_weights=backbone or None,
    )
    if labels_file:
        args["label_names"] = Path(labels_file).read_text(encoding="utf-8").splitlines()
    new = add_entry(args.pop("name"), args.pop("file"), **args)
    print(f"added {new.name} ({new.num_params:,} params, sha256 {new.sha256[:12]}...) to {manifest}")
    print("now run `python -m zoo.readme` to update the README's model table")
    return 0


if __name__ == "__main__":
    sys.exit(main())

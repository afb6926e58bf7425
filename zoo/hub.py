"""The Hugging Face Hub: downloading weights and publishing them, on top of ``zoo.weights``.

``resolve_file`` is where a manifest weight comes from: ``zoo.weights.local_file`` (an
explicit path or a local folder), else the Hub repo and commit it was published to.
Downloads go through ``huggingface_hub.hf_hub_download``, so they honour ``HF_ENDPOINT``,
``HF_HUB_OFFLINE``, ``HF_TOKEN`` and the shared HF cache as every other library does; what comes
down is then checked against the manifest by ``zoo.weights`` before it is parsed.

Publishing a manifest weight::

    python -m zoo.hub push resnet20.fashion_mnist --repo ORG/NAME [--dry-run] [--out DIR] [--manifest PATH]

builds the repo folder (``model.safetensors``, ``config.json``, a ``README.md`` model card whose
metadata carries the manifest's metrics as a model-index), uploads it, and records the repo and
the commit it made in the manifest it is given (default: ``$ZOO_MANIFEST``, else the
checkout's), so later downloads are pinned to exactly that commit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, hf_hub_download, is_offline_mode
from huggingface_hub.errors import EntryNotFoundError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from ._registry import split_name
from ._tasks import task_kind
from ._version import __version__
from .weights import (
    WeightsEntry,
    WeightsError,
    find_weights,
    load_manifest,
    local_file,
    manifest_to_edit,
    not_found_error,
    read_verified,
    save_manifest,
)

HUB_FILENAME = "model.safetensors"  # the weights' name inside a Hub repo, as timm publishes them


def hub_download(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """``filename`` from the Hub repo at ``revision`` (a commit sha pins it), through the HF cache."""
    try:
        path = hf_hub_download(
            repo_id, filename, revision=revision, library_name="zoo", library_version=__version__
        )
    except (EntryNotFoundError, HFValidationError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if is_offline_mode():  # the library's own message does not say why it did not ask the Hub
            reason = f"HF_HUB_OFFLINE is set and the file is not in the HF cache ({reason})"
        raise WeightsError(
            f"cannot get {filename} from Hub repo {repo_id} at revision {revision or 'main'}: "
            f"{type(e).__name__}: {reason}"
        ) from e
    return Path(path)


def resolve_file(w: WeightsEntry, checkpoint_path: str | Path | None = None) -> Path:
    """Where ``w``'s file is: the explicit path, a local folder, or the Hub cache (downloading)."""
    local = local_file(w, checkpoint_path)
    if local is not None:
        return local
    if w.hf_repo_id:
        return hub_download(w.hf_repo_id, HUB_FILENAME, revision=w.hf_revision)
    raise not_found_error(w)


def download_external(spec: str) -> Path:
    """The ``model.safetensors`` of a timm-compatible Hub repo, ``ORG/REPO`` or ``ORG/REPO@REVISION``.

    Only the safetensors file is fetched: a repo with just a pickled ``pytorch_model.bin`` fails.
    """
    repo_id, _, revision = spec.partition("@")
    if repo_id.count("/") != 1:
        raise ValueError(f"expected 'hf-hub:ORG/REPO' or 'hf-hub:ORG/REPO@REVISION', got 'hf-hub:{spec}'")
    return hub_download(repo_id, HUB_FILENAME, revision=revision or None)


# -- publishing ------------------------------------------------------------------------------


def hub_config(w: WeightsEntry) -> dict:
    """``config.json``: how to build the model and feed it, readable without zoo."""
    spec = w.input
    crop_pct = 1.0 if spec.resize_size is None else round(min(spec.input_size) / spec.resize_size, 4)
    return {
        "architecture": w.arch,
        "name": w.name,
        "num_classes": w.num_classes,
        "label_names": w.label_names,
        "model_args": w.model_args,
        "input": dataclasses.asdict(spec),
        # The same preprocessing in timm's pretrained_cfg layout, for tools that read that.
        "pretrained_cfg": {
            "tag": split_name(w.name)[1],
            "input_size": [spec.in_chans, *spec.input_size],
            "interpolation": spec.interpolation,
            "crop_pct": crop_pct,
            "crop_mode": "center",
            "mean": spec.mean,
            "std": spec.std,
            "num_classes": w.num_classes,
            "license": w.license,
        },
        "sha256": w.sha256,
        **(
            {"backbone_weights": dataclasses.asdict(w.provenance.backbone_weights)}
            if w.provenance.backbone_weights
            else {}
        ),
    }


def model_card(w: WeightsEntry) -> ModelCard:
    """The repo's README.md: YAML metadata (with a model-index of the metrics) and how to reproduce."""
    task = task_kind(w.task).hub_task  # the Hub's name for the task; an unknown task is an error
    data = ModelCardData(
        library_name="zoo",
        license=w.license,
        tags=["zoo", task, w.arch],
        datasets=[w.dataset],
        pipeline_tag=task,
        model_name=w.name,
        metrics=list(w.metrics),
        eval_results=[
            EvalResult(
                task_type=task,
                dataset_type=w.dataset,
                dataset_name=w.dataset,
                dataset_split=w.split,
                metric_type=metric,
                metric_name=metric,
                metric_value=value,
            )
            for metric, value in w.metrics.items()
        ],
    )
    metrics = "\n".join(f"| {k} | {v:g} |" for k, v in w.metrics.items())
    facts = [f"recipe `{w.provenance.config}`"]
    facts += [f"commit `{w.provenance.git_commit}`"] if w.provenance.git_commit else []
    facts += [w.provenance.hardware] if w.provenance.hardware else []
    facts += (
        [f"{w.provenance.train_wall_time_s / 3600:.2f} h of training"]
        if w.provenance.train_wall_time_s
        else []
    )
    started = (
        f"Its backbone started from the weights `{w.provenance.backbone_weights.name}` (sha256 "
        f"`{w.provenance.backbone_weights.sha256}`); the rest of the model was trained from scratch.\n\n"
        if w.provenance.backbone_weights
        else ""
    )
    body = f"""
# {w.name}

`{w.arch}` trained on {w.dataset}; metrics on the {w.split} split:

| metric | value |
|---|---|
{metrics}

## Use

```python
import zoo
from zoo.weights import eval_transforms

model = zoo.create_model("{w.name}", pretrained=True).eval()  # sha256-checked against zoo's manifest
preprocess = eval_transforms("{w.name}")
```

## Reproduce

{started}Trained with {", ".join(facts)}; to train and evaluate again:

```bash
{w.provenance.command}
{w.provenance.eval_command}
```

## File

`{HUB_FILENAME}`: {w.num_params:,} parameters ({w.dtype}), {w.size_bytes:,} bytes, sha256 `{w.sha256}`.
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def build_repo_folder(w: WeightsEntry, folder: str | Path) -> Path:
    """Write the repo's files into ``folder``; the weights copy is re-verified before it ships."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(resolve_file(w), folder / HUB_FILENAME)
    read_verified(folder / HUB_FILENAME, w)
    (folder / "config.json").write_text(json.dumps(hub_config(w), indent=2) + "\n", encoding="utf-8")
    model_card(w).save(folder / "README.md")
    return folder


def check_repo_id(repo_id: str) -> None:
    """A Hub repo id (``ORG/NAME`` or ``NAME``) by huggingface_hub's own rules, checked before
    anything is written or uploaded."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise WeightsError(f"--repo {repo_id!r} is not a Hub repo id (expected ORG/NAME): {e}") from None


def push(
    name: str,
    repo_id: str,
    *,
    dry_run: bool = False,
    folder: str | Path | None = None,
    private: bool | None = None,
    manifest: str | Path | None = None,
) -> WeightsEntry:
    """Publish ``name``'s weights to ``repo_id`` and record the repo and commit in the manifest.

    With ``dry_run`` the folder is written (to ``folder``, or a temporary one) and nothing is
    uploaded or recorded. Returns the entry as it now stands.
    """
    check_repo_id(repo_id)
    w = find_weights(name, load_manifest(manifest))
    if not dry_run:
        manifest = manifest_to_edit(manifest)
    if dry_run:
        out = build_repo_folder(w, folder or tempfile.mkdtemp(prefix=f"zoo-push-{w.name}-"))
        print(f"dry run: {w.name} -> {repo_id} would upload {out}: {sorted(p.name for p in out.iterdir())}")
        return w
    api = HfApi()
    with tempfile.TemporaryDirectory(prefix=f"zoo-push-{w.name}-") as tmp:
        out = build_repo_folder(w, folder or tmp)
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=out, commit_message=f"{w.name} (sha256 {w.sha256[:12]})"
        )
    # Re-read the manifest: it may have gained entries while the upload ran.
    entries = load_manifest(manifest)
    current = find_weights(w.name, entries)
    if current.sha256 != w.sha256:
        raise WeightsError(f"{w.name} changed in the manifest during the upload; not recording {commit.oid}")
    published = dataclasses.replace(current, hf_repo_id=repo_id, hf_revision=commit.oid)
    save_manifest([published if e.name == w.name else e for e in entries], manifest)
    print(f"pushed {w.name} to {commit.commit_url}; the manifest now pins revision {commit.oid}")
    print(f"commit {manifest or 'the manifest'} and run `python -m zoo.readme` to refresh the README table")
    return published


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zoo.hub", description="Publish weights to the Hub.")
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("push", help="upload a manifest weight and record the Hub commit")
    cmd.add_argument("name", help="arch.tag, as in the manifest")
    cmd.add_argument("--repo", required=True, help="ORG/NAME on the Hub")
    cmd.add_argument("--dry-run", action="store_true", help="write the folder, upload nothing")
    cmd.add_argument("--out", help="write the folder here (default: a temporary folder)")
    cmd.add_argument("--private", action="store_true", default=None)
    cmd.add_argument(
        "--manifest", help="the manifest to read and record in (default: $ZOO_MANIFEST, else zoo's)"
    )
    args = parser.parse_args(argv)
    try:
        push(
            args.name,
            args.repo,
            dry_run=args.dry_run,
            folder=args.out,
            private=args.private,
            manifest=args.manifest,
        )
    except WeightsError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()

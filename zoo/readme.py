"""The README's model table and docs/weights.md, generated from the weights manifest so they
can never disagree with it.

``python -m zoo.readme [--readme PATH] [--details PATH]`` rewrites what lies between the
markers of the README (a short row per weight) and of the details page (per weight: where it
trained, its seeds, backbone, licence and the commands that train and evaluate it); by
default the checkout's. ``--check`` only says whether they are current (exit status 1 if
not). The library part (``render_readme``, ``render_details_doc``) takes and returns text.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._io import atomic_write
from ._paths import checkout_root
from .weights import WeightsEntry, load_manifest

START, END = "<!-- model-table:start -->", "<!-- model-table:end -->"
DETAILS_START, DETAILS_END = "<!-- weights-details:start -->", "<!-- weights-details:end -->"


def _where(w: WeightsEntry) -> str:
    """CPU or GPU, from the hardware string the weight records."""
    return (
        "GPU"
        if "trained on cuda" in w.provenance.hardware
        or w.provenance.hardware.lower().startswith(("nvidia", "cuda"))
        else "CPU"
    )


def render_table(entries: list[WeightsEntry]) -> str:
    """Markdown for the README: one short table row per weight (the details are in
    ``render_details``)."""
    if not entries:
        return "_No published weights yet._"
    rows = [
        "| Weights | Dataset (split) | Metrics | Params | Input | Training | File | Hub |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w in sorted(entries, key=lambda e: e.name):
        name = f"`{w.name}`" + (" (default)" if w.default else "")
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in w.metrics.items() if "/" not in k)
        shape = "x".join(map(str, [w.input.in_chans, *w.input.input_size]))
        hub = (
            f"[{w.hf_repo_id}](https://huggingface.co/{w.hf_repo_id}/tree/{w.hf_revision})"
            if w.hf_repo_id
            else "-"
        )
        rows.append(
            f"| {name} | {w.dataset} ({w.split}) | {metrics} | {w.num_params / 1e6:.2f}M | {shape} "
            f"| {w.provenance.train_wall_time_s / 60:.1f} min ({_where(w)}) | {w.size_bytes / 1e6:.1f} MB | {hub} |"
        )
    return "\n".join(rows)


def render_details(entries: list[WeightsEntry]) -> str:
    """Markdown for docs/weights.md: per weight the machine that trained it, the seeds, the
    backbone it started from, its licence, the per-class numbers, and the commands that train
    and evaluate it."""
    if not entries:
        return "_No published weights yet._"
    parts = []
    for w in sorted(entries, key=lambda e: e.name):
        lines = [f"### `{w.name}`", ""]
        lines.append(
            f"- trained: {w.provenance.train_wall_time_s / 60:.1f} min on {w.provenance.hardware or 'an unrecorded machine'}"
        )
        if w.provenance.seeds is not None and len(w.provenance.seeds.values) > 1:
            std = f" ± {w.provenance.seeds.std:g}" if w.provenance.seeds.std is not None else ""
            values = ", ".join(f"{k}: {v:g}" for k, v in w.provenance.seeds.values.items())
            lines.append(
                f"- {w.provenance.seeds.metric} over seeds: {w.provenance.seeds.mean:g}{std} ({values}); this file is one of them"
            )
        backbone = getattr(w, "backbone_weights", None)
        if backbone is not None:
            lines.append(
                f"- started from the backbone weights `{backbone.name}` (sha256 {backbone.sha256[:12]}...)"
            )
        if w.license != "mit":
            lines.append(f"- licence: {w.license}")
        nested = {k: v for k, v in w.metrics.items() if "/" in k}  # e.g. per_class_iou/sky
        if nested:
            group = next(iter(nested)).split("/")[0]
            lines.append(
                f"- {group.replace('_', ' ')}: "
                + ", ".join(f"{k.split('/', 1)[1]} {v:.4g}" for k, v in nested.items())
            )
        lines.append(f"- recipe: [{w.provenance.config}](../{w.provenance.config})")
        lines.append(f"- train: `{w.provenance.command}`")
        lines.append(f"- evaluate: `{w.provenance.eval_command}`")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def splice_block(text: str, block: str, start: str, end: str, what: str) -> str:
    """``text`` with what lies between the markers ``start`` and ``end`` replaced by ``block``;
    ``what`` names the text in the error when a marker is missing."""
    if start not in text or end not in text or text.index(start) > text.index(end):
        raise ValueError(f"{what} needs the markers {start} and {end} (in that order)")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block}\n{end}{tail}"


def render_details_doc(text: str, entries: list[WeightsEntry]) -> str:
    """``text`` (docs/weights.md) with the part between its markers replaced by the details."""
    return splice_block(text, render_details(entries), DETAILS_START, DETAILS_END, "docs/weights.md")


def render_readme(text: str, entries: list[WeightsEntry]) -> str:
    """``text`` with the part between the markers replaced by the current table."""
    return splice_block(text, render_table(entries), START, END, "README.md (around the model table)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zoo.readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is out of date")
    root = checkout_root()
    parser.add_argument(
        "--readme",
        type=Path,
        default=root / "README.md" if root else None,
        required=root is None,
        help="the README to update (default: the checkout's)",
    )
    parser.add_argument(
        "--details",
        type=Path,
        default=root / "docs" / "weights.md" if root else None,
        help="the per-weight details page to update (default: the checkout's docs/weights.md; '-' for none)",
    )
    parser.add_argument("--manifest", type=Path, help="default: $ZOO_MANIFEST, else the one shipped with zoo")
    args = parser.parse_args(argv)
    entries = load_manifest(args.manifest)
    pages = [(args.readme, render_readme, "model table")]
    if args.details is not None and str(args.details) != "-":
        pages.append((args.details, render_details_doc, "weights details"))
    for path, render, what in pages:
        text = path.read_text(encoding="utf-8")
        new = render(text, entries)
        if args.check:
            if new != text:
                sys.exit(f"{path}: the {what} is out of date; run `python -m zoo.readme`")
            continue
        if new != text:
            atomic_write(path, new.encode("utf-8"))
        print(f"{path}: {what} {'updated' if new != text else 'already current'}")


if __name__ == "__main__":
    main()

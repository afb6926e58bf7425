"""The README's model table, generated from the weights manifest so it can never disagree with it.

``python -m zoo.readme [--readme PATH]`` rewrites what lies between the two markers in the
README it is given (default: the checkout's README.md); ``--check`` only says whether it is
current (exit status 1 if not). The library part, ``render_readme``, takes and returns text.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._paths import checkout_root
from .weights import WeightsEntry, load_manifest

START, END = "<!-- model-table:start -->", "<!-- model-table:end -->"


def render_table(entries: list[WeightsEntry]) -> str:
    """Markdown for the weights: one table row each, then one train and one eval command each."""
    if not entries:
        return "_No published weights yet._"
    rows = [
        "| Weights | Dataset (split) | Metrics | Params | Input | Training time | File | Hub |",
        "|---|---|---|---|---|---|---|---|",
    ]
    commands, per_class = [], []
    for w in sorted(entries, key=lambda e: e.name):
        name = f"`{w.name}`" + (" (default)" if w.default else "")
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in w.metrics.items() if "/" not in k)
        nested = {k: v for k, v in w.metrics.items() if "/" in k}  # e.g. per_class_iou/sky
        if nested:
            group = next(iter(nested)).split("/")[0]
            per_class.append(
                f"- `{w.name}` {group.replace('_', ' ')}: "
                + ", ".join(f"{k.split('/', 1)[1]} {v:.4g}" for k, v in nested.items())
            )
        shape = "x".join(map(str, [w.input.in_chans, *w.input.input_size]))
        hub = (
            f"[{w.hf_repo_id}](https://huggingface.co/{w.hf_repo_id}/tree/{w.hf_revision})"
            if w.hf_repo_id
            else "-"
        )
        rows.append(
            f"| {name} | {w.dataset} ({w.split}) | {metrics} | {w.num_params / 1e6:.2f}M | {shape} "
            f"| {w.train_wall_time_s / 60:.1f} min, {w.hardware} | {w.size_bytes / 1e6:.1f} MB | {hub} |"
        )
        commands.append(
            f"- `{w.name}` ([{w.config}]({w.config})): train `{w.command}`, evaluate `{w.eval_command}`"
        )
    text = "\n".join(rows)
    if per_class:
        text += "\n\nPer class:\n\n" + "\n".join(per_class)
    return text + "\n\nReproduce each weight:\n\n" + "\n".join(commands)


def render_readme(text: str, entries: list[WeightsEntry]) -> str:
    """``text`` with the part between the markers replaced by the current table."""
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise ValueError(
            f"README.md needs the markers {START} and {END} (in that order) around the model table"
        )
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{render_table(entries)}\n{END}{tail}"


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
    parser.add_argument("--manifest", type=Path, help="default: $ZOO_MANIFEST, else the one shipped with zoo")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    new = render_readme(text, load_manifest(args.manifest))
    if args.check:
        if new != text:
            sys.exit(f"{args.readme}: the model table is out of date; run `python -m zoo.readme`")
        return
    if new != text:
        args.readme.write_text(new, encoding="utf-8")
    print(f"{args.readme}: model table {'updated' if new != text else 'already current'}")


if __name__ == "__main__":
    main()

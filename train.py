#!/usr/bin/env python
"""Train a model from a YAML recipe.

    python train.py configs/fashion_mnist/resnet20.yaml
    python train.py configs/fashion_mnist/resnet20.yaml optim.lr=0.05 train.out_dir=runs/try
    python train.py configs/fashion_mnist/resnet20.yaml --resume        # continue the last run
    torchrun --nproc_per_node 2 train.py configs/fashion_mnist/resnet20.yaml   # data-parallel

The run folder (train.out_dir) receives config.json (the resolved config), metrics.jsonl
(loss, lr, img/s, eval metrics), last.ckpt (atomic, every train.ckpt_every_steps steps and at
each epoch end), model.safetensors and summary.json.

Ctrl-C (SIGINT) or SIGTERM stops a run after the step in progress: that step is checkpointed,
one line says where the run stopped and the command that resumes it, and the exit status is
130 (SIGINT) or 143 (SIGTERM). A second signal stops at once, at the last checkpoint.
"""

import argparse
import os
import shlex
import sys

import yaml

from zoo.config import ConfigError, RunConfig, load_config, to_dict
from zoo.engine import CheckpointError, NonFiniteLossError, RunFolderError, RunInterrupted, train


def resume_command() -> str:
    """This process's command line, with ``--resume``; under torchrun, a single node's launch."""
    args = shlex.join([sys.argv[0], *sys.argv[1:], *([] if "--resume" in sys.argv else ["--resume"])])
    world, local = os.environ.get("WORLD_SIZE", "1"), os.environ.get("LOCAL_WORLD_SIZE")
    if world == "1":
        return f"python {args}"
    if local == world:
        return f"torchrun --nproc_per_node {world} {args}"
    return f"torchrun <as launched, on every node> {args}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Config keys (section.key) and defaults: see zoo/config.py or --show-config.",
    )
    parser.add_argument("config", nargs="?", help="YAML recipe (may extend a base with _base_)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="e.g. optim.lr=0.05 schedule.epochs=10"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="key=value", help="same as a positional override"
    )
    parser.add_argument(
        "--data-dir", help="dataset folder (else data.data_dir, $ZOO_DATA_DIR, the known places)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from <out_dir>/last.ckpt if it exists"
    )
    parser.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    args = parser.parse_intermixed_args()  # overrides may follow --resume or --data-dir
    try:
        overrides = args.overrides + args.set + ([f"data.data_dir={args.data_dir}"] if args.data_dir else [])
        cfg = load_config(args.config, overrides) if args.config else RunConfig()
    except ConfigError as err:
        parser.error(str(err))
    if args.show_config or not args.config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0 if args.show_config else parser.print_usage() or 2
    try:
        train(cfg, resume=args.resume)
    except (NonFiniteLossError, RunFolderError, CheckpointError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except RunInterrupted as stop:
        if stop.is_main:
            print(f"{stop}; resume: {resume_command()}", file=sys.stderr, flush=True)
        return stop.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())

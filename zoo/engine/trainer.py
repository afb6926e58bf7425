"""The training loop, shared by every task.

One linear function: build (model, data, optimizer, schedule, EMA), maybe resume, then
epochs of steps with periodic checkpoints and evaluations. Everything that makes a run
reproducible travels in the checkpoint: model, optimizer, scheduler, EMA, step counters,
RNG state and the resolved config. The data order depends only on (seed, epoch, step), so
``resume=True`` continues exactly where the last checkpoint left off.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .. import create_model
from ..config import RunConfig, to_dict
from .autotune import AUTO, autocast, candidates, describe, fastest, native_bf16, time_settings
from .checkpoint import load_checkpoint, save_checkpoint, save_weights, write_json
from .distributed import DistInfo, cleanup, init_distributed
from .evaluator import evaluate
from .tasks import get_task


class NonFiniteLossError(RuntimeError):
    pass


def build_model(cfg: RunConfig, info: dict) -> torch.nn.Module:
    args = dict(cfg.model.args)
    args.setdefault("num_classes", info["num_classes"])
    args.setdefault("in_chans", info["in_chans"])
    return create_model(cfg.model.name, **args)


class MetricsLog:
    """JSON lines, one record per log step or evaluation, appended and flushed at once."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, **record: Any) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def resolve_speed_settings(
    cfg: RunConfig, model, loader, task, dist: DistInfo, saved: dict | None, log: MetricsLog
) -> RunConfig:
    """``cfg`` with ``train.amp_bf16`` / ``train.channels_last`` ``auto`` replaced by booleans:
    the fastest setting timed on this model and machine, or, when resuming, the setting the
    checkpointed run chose (a resumed run must compute what the uninterrupted one did).
    Values set explicitly are kept as they are, on resume too."""
    t = cfg.train
    keys = [k for k in ("amp_bf16", "channels_last") if getattr(t, k) == AUTO]
    chosen: dict[str, bool] = {}
    if keys and saved is not None:
        chosen = {k: saved["train"][k] for k in keys}
    elif keys:
        box = [None]
        if dist.is_main:
            batch = next(iter(loader.batches(0, 0)))
            trials = time_settings(
                model, batch, task, cfg, dist.device, candidates(t.amp_bf16, t.channels_last)
            )
            best = fastest(trials)
            box[0] = {k: getattr(best, k) for k in keys}
            print(
                f"auto settings (forward + backward of one batch):\n{describe(trials, task.batch_size(batch))}"
            )
            for trial in trials:
                log.write(kind="autotune", **dataclasses.asdict(trial))
        if dist.world > 1:  # every process must run what the main one measured
            torch.distributed.broadcast_object_list(box, src=0)
        chosen = box[0]
    resolved = dataclasses.replace(cfg, train=dataclasses.replace(t, **chosen)) if chosen else cfg
    if resolved.train.amp_bf16 and dist.device.type == "cpu" and dist.is_main and not native_bf16():
        warnings.warn(
            "train.amp_bf16 is true, but this CPU has no native bf16 (AVX-512 BF16 or AMX): autocast "
            "emulates it, usually several times slower than float32. train.amp_bf16=auto times both.",
            stacklevel=2,
        )
    return resolved


def train(cfg: RunConfig, resume: bool = False) -> dict[str, Any]:
    dist = init_distributed()
    try:
        return _train(cfg, resume, dist)
    finally:
        cleanup()


def _train(cfg: RunConfig, resume: bool, dist: DistInfo) -> dict[str, Any]:
    t = cfg.train
    out = Path(t.out_dir)
    ckpt_path = out / "last.ckpt"
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(out / "metrics.jsonl", dist.is_main)
    if t.threads:
        torch.set_num_threads(t.threads)
    if t.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(t.seed)

    task = get_task(cfg.task)
    train_loader, eval_loader, info = task.build_loaders(cfg, dist.rank, dist.world)
    model = build_model(cfg, info).to(dist.device)
    state = load_checkpoint(ckpt_path) if resume and ckpt_path.is_file() else None
    cfg = resolve_speed_settings(
        cfg, model, train_loader, task, dist, state["config"] if state else None, log
    )
    t = cfg.train
    if dist.is_main:
        write_json(to_dict(cfg), out / "config.json")  # resolved: auto settings as chosen
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = create_optimizer_v2(
        model,
        opt=cfg.optim.opt,
        lr=cfg.optim.lr,
        weight_decay=cfg.optim.weight_decay,
        momentum=cfg.optim.momentum,
        **({"nesterov": cfg.optim.nesterov} if cfg.optim.opt == "sgd" else {}),
    )
    steps_per_epoch = len(train_loader)
    s = cfg.schedule
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=s.sched,
        num_epochs=s.epochs,
        warmup_epochs=s.warmup_epochs,
        warmup_lr=s.warmup_lr,
        min_lr=s.min_lr,
        step_on_epochs=False,
        updates_per_epoch=steps_per_epoch,
    )
    ema = ModelEmaV3(model, decay=t.ema_decay) if t.ema else None

    step, elapsed, best = 0, 0.0, {}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["rng"])
        step, elapsed, best = state["step"], state["elapsed_s"], state["best"]
        if dist.is_main:
            print(f"resumed from {ckpt_path} at step {step} (epoch {step // steps_per_epoch})")
    elif resume and dist.is_main:
        print(f"no checkpoint at {ckpt_path}; starting from scratch")
    if resume:
        scheduler.step_update(step)

    net = DistributedDataParallel(model) if dist.world > 1 else model
    total_steps = s.epochs * steps_per_epoch
    if t.max_steps:
        total_steps = min(total_steps, t.max_steps)

    def checkpoint() -> None:
        if dist.is_main:
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "rng": torch.get_rng_state(),
                    "step": step,
                    "elapsed_s": elapsed,
                    "best": best,
                    "config": to_dict(cfg),
                    "info": info,
                },
                ckpt_path,
            )

    def run_eval(epoch: int) -> None:
        results = {"model": evaluate(model, eval_loader, task, info, channels_last=t.channels_last)}
        if ema is not None:
            results["ema"] = evaluate(ema.module, eval_loader, task, info, channels_last=t.channels_last)
        for which, r in results.items():
            scalars = {k: v for k, v in r.items() if isinstance(v, (int, float))}
            log.write(
                kind="eval", which=which, epoch=epoch, step=step, elapsed_s=round(elapsed, 1), **scalars
            )
            best[which] = scalars
        if dist.is_main:
            print(
                f"epoch {epoch}: " + "  ".join(f"{w} {k}={v}" for w, r in best.items() for k, v in r.items())
            )

    model.train()
    bar = tqdm(total=total_steps, initial=step, disable=not dist.is_main, unit="step", dynamic_ncols=True)
    window_t, window_n = time.perf_counter(), 0
    while step < total_steps:
        epoch, start = divmod(step, steps_per_epoch)
        t0 = time.perf_counter()
        for batch in train_loader.batches(epoch, start):
            batch = task.to_device(batch, dist.device, t.channels_last)
            with autocast(t.amp_bf16, dist.device):
                loss = task.loss(net, batch, cfg)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss is {loss.item()} at step {step} (epoch {epoch}); stopping. The last good checkpoint "
                    f"({ckpt_path}, step {step - step % max(t.ckpt_every_steps, 1)} or the last epoch end) is kept. "
                    f"Try a lower optim.lr, optim.clip_grad > 0, or train.amp_bf16=false."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
            optimizer.step()
            step += 1
            scheduler.step_update(step)
            if ema is not None:
                ema.update(model, step=step)
            window_n += task.batch_size(batch) * dist.world
            if step % t.log_every_steps == 0 or step == total_steps:
                now = time.perf_counter()
                ips = window_n / (now - window_t)
                lr = optimizer.param_groups[0]["lr"]
                log.write(
                    kind="train",
                    epoch=epoch,
                    step=step,
                    loss=round(loss.item(), 5),
                    lr=lr,
                    img_per_s=round(ips, 1),
                )
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.4g}", img_s=f"{ips:.0f}")
                window_t, window_n = now, 0
            bar.update(1)
            if t.ckpt_every_steps and step % t.ckpt_every_steps == 0:
                elapsed += time.perf_counter() - t0
                t0 = time.perf_counter()
                checkpoint()
            if step >= total_steps:
                break
        elapsed += time.perf_counter() - t0
        t0 = time.perf_counter()
        epoch_done = step % steps_per_epoch == 0
        if t.eval_every_epochs and (
            (epoch_done and (epoch + 1) % t.eval_every_epochs == 0) or step >= total_steps
        ):
            run_eval(epoch)
        elapsed += time.perf_counter() - t0
        checkpoint()
    bar.close()

    final = ema.module if ema is not None else model
    summary = {
        "step": step,
        "train_wall_time_s": round(elapsed, 1),
        "final": best.get("ema" if ema else "model", {}),
        "eval_of": "ema" if ema is not None else "model",
        "info": info,
    }
    if dist.is_main:
        save_weights(final.state_dict(), out / "model.safetensors", {"config": to_dict(cfg), "info": info})
        write_json(summary, out / "summary.json")
        print(f"done: {step} steps in {elapsed / 60:.1f} min; weights at {out / 'model.safetensors'}")
    return summary

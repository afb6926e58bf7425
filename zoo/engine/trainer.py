"""The training loop, shared by every task.

``train`` reads top to bottom: claim the run folder, build (data, model, optimizer, schedule,
EMA), maybe restore a checkpoint, then epochs of ``train_step``s with periodic logs,
checkpoints and evaluations, then export. Everything that makes a run reproducible travels in
the checkpoint: model, optimizer, scheduler, EMA, step counter, RNG states (the CPU's, and the
GPU's on CUDA), the resolved config and the dataset's description. The data order depends only
on (seed, epoch, step), so ``resume=True`` continues exactly where the last checkpoint left off,
as long as the precision keys of ``RESUMABLE_CHANGES`` are left as they were.

What a run guarantees: checkpoints are atomic and carry a checksum; only finite states are
checkpointed; a run folder is locked while a run uses it; a used folder is never silently
restarted; a resumed config is compared with the checkpoint's, key by key; a resumed
``metrics.jsonl`` reads as one run; SIGINT (Ctrl-C) or SIGTERM stops a run after the step in
progress, with that step checkpointed (``RunInterrupted``).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .._io import remove_orphans
from ..config import ConfigError, RunConfig, from_saved, to_dict
from ..data.registry import DatasetInfo
from .autotune import AUTO, autocast, candidates, describe, fastest, native_bf16, time_settings
from .checkpoint import (
    load_checkpoint,
    model_from_config,
    save_checkpoint,
    save_weights,
    write_json,
)
from .distributed import DistInfo, cleanup, describe_device, init_distributed
from .evaluator import evaluate
from .run_folder import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    SUMMARY,
    WEIGHTS,
    MetricsLog,
    RunLock,
    check_fresh_folder,
    truncate_log,
)
from .tasks import Task, get_task


class NonFiniteLossError(RuntimeError):
    pass


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run; ``checkpoint`` (``None``: none written yet) holds
    ``step``, from which ``resume=True`` continues as if the run had not stopped.

    A ``KeyboardInterrupt``, as Ctrl-C is anywhere in Python, so that code which catches
    ``Exception`` to carry on (the ablation runner's loop over runs) stops too. ``at_once``: a
    second signal stopped the run after step ``reached``, ``step`` is the last checkpoint's.
    ``reached`` is ``None`` when the run had not been built yet."""

    def __init__(
        self,
        signum: int,
        step: int,
        reached: int | None,
        total_steps: int,
        epoch: int,
        checkpoint: Path | None,
        at_once: bool = False,
        is_main: bool = True,
    ):
        self.signum, self.step, self.reached, self.total_steps = signum, step, reached, total_steps
        self.epoch, self.checkpoint, self.at_once, self.is_main = epoch, checkpoint, at_once, is_main
        name = self.signal_name
        if reached is None:
            what = f"stopped by a second {name} while the run was being set up"
        elif at_once:
            what = f"stopped at once by a second {name} after step {reached} of {total_steps} (epoch {epoch})"
        else:
            what = f"stopped at step {step} of {total_steps} (epoch {epoch}) by {name}"
        if reached is None:
            super().__init__(what)
            return
        if checkpoint is None:
            where = "no checkpoint written yet"
        else:
            where = f"checkpoint {checkpoint}" + (f" (step {step})" if step != reached else "")
        super().__init__(f"{what}; {where}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """128 + the signal's number, as a shell reports a process that the signal ended."""
        return 128 + self.signum


# -- resuming ------------------------------------------------------------------------------

# Keys a resumed run may change: they do not alter what was computed so far, or (epochs) the
# trainer honours them by rebuilding the schedule for the new length. amp_bf16, channels_last
# and deterministic can change the arithmetic from then on (close, not bit-identical), and are
# allowed because a run must move between a CPU with native bf16 and one without.
RESUMABLE_CHANGES = {
    "train.out_dir",
    "train.threads",
    "train.device",
    "train.log_every_steps",
    "train.ckpt_every_steps",
    "train.eval_every_epochs",
    "train.max_steps",
    "train.deterministic",
    "train.amp_bf16",
    "train.channels_last",
    "data.data_dir",
    "data.eval_batch_size",
    "data.eval_split",
    "schedule.epochs",  # more only: the schedule is rebuilt for the new length
}


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "args":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(saved: RunConfig, new: RunConfig) -> dict[str, tuple[Any, Any]]:
    """Every key whose value differs between the checkpoint's config and the new one
    (``auto`` against the value it resolved to is no change)."""
    old, cur = _flat(to_dict(saved)), _flat(to_dict(new))
    return {
        k: (old.get(k), cur[k])
        for k in cur
        if old.get(k) != cur[k] and not (cur[k] == AUTO and k in ("train.amp_bf16", "train.channels_last"))
    }


def check_resume_config(saved: RunConfig, new: RunConfig, path: Path) -> dict[str, tuple[Any, Any]]:
    """The changes a resume may make; refuses, naming each key, those it cannot honour."""
    changes = config_changes(saved, new)
    refused = {k: v for k, v in changes.items() if k not in RESUMABLE_CHANGES}
    if "schedule.epochs" in changes and changes["schedule.epochs"][1] < changes["schedule.epochs"][0]:
        refused["schedule.epochs"] = changes["schedule.epochs"]
    if refused:
        listing = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        raise ConfigError(
            f"cannot resume {path} with a changed config: {listing}. These change what the run "
            "computes; keep the checkpoint's values, or start a new train.out_dir. (A resume may "
            f"change: {', '.join(sorted(RESUMABLE_CHANGES))}; schedule.epochs only upwards.)"
        )
    return changes


def resolve_speed_settings(
    cfg: RunConfig, model, loader, task, dist: DistInfo, saved: dict | None, log: MetricsLog
) -> RunConfig:
    """``cfg`` with ``train.amp_bf16`` / ``train.channels_last`` ``auto`` replaced by booleans:
    the fastest setting timed on this model and machine, or, when resuming, the setting the
    checkpointed run chose, so that the resumed run computes what the uninterrupted one did.
    Values set explicitly are kept as they are, on resume too: a resume that sets them to
    something else than the checkpoint's (allowed, to move a run to a CPU with or without
    native bf16) continues with the new arithmetic, close to the uninterrupted run but not
    bit-identical."""
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


# -- stopping on a signal ------------------------------------------------------------------


class StopSignals:
    """SIGINT and SIGTERM while ``train`` runs (a context manager; the previous handlers come
    back on exit). The first signal only sets ``signum``: the loop finishes the step in
    progress, checkpoints it and raises ``RunInterrupted``. A second one stops at once (a
    ``RunInterrupted`` raised where the run is, ``at_once``), except while that last checkpoint
    is written (``shielded``): checkpoints are atomic either way, so nothing is half written.

    Installed only from the main thread (Python allows no other) and not over a signal that is
    ignored (``nohup``, a launcher's choice); elsewhere the run stops as Python would."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, verbose: bool = True):
        self.signum = 0
        self.shielded = False
        self.run: Run | None = None  # once built: what an immediate stop reports
        self.verbose = verbose
        self._pid = os.getpid()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                previous = signal.getsignal(s)
                if previous is not signal.SIG_IGN and previous is not None:  # None: set outside Python
                    self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous.clear()

    def _say(self, text: str) -> None:
        if self.verbose:  # os.write: print() may be in progress on the same stream
            os.write(2, f"\n{text}\n".encode())

    def _handle(self, signum: int, frame) -> None:
        if os.getpid() != self._pid:  # a forked child: the trainer's process decides
            return
        name = signal.Signals(signum).name
        if not self.signum:
            self.signum = signum
            self._say(
                f"{name}: stopping after the step in progress, once it is checkpointed (again: at once)"
            )
        elif self.shielded:
            self._say(f"{name}: writing the checkpoint; stopping as soon as it is written")
        else:
            raise stopped(self.run, signum, at_once=True)


def stopped(run: Run | None, signum: int, at_once: bool = False) -> RunInterrupted:
    """The ``RunInterrupted`` of ``run`` as it stands (``None``: before it was built)."""
    if run is None:
        return RunInterrupted(signum, 0, None, 0, 0, None, at_once)
    return RunInterrupted(
        signum,
        run.saved_step or 0,
        run.step,
        run.total_steps,
        run.step // run.steps_per_epoch,
        run.ckpt_path if run.saved_step is not None else None,
        at_once,
        run.dist.is_main,
    )


def stop_requested(run: Run) -> int:
    """The signal asking the run to stop, 0 if none. Under torchrun every process must stop
    after the same step (a process that went on would wait for the others in its all-reduce
    forever), so the processes agree on it with an all-reduce of one number, after each step:
    the run syncs with the device at each step anyway (the finite-loss check)."""
    signum = run.signals.signum
    if run.dist.world > 1:
        flag = torch.tensor([signum], device=run.dist.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        signum = int(flag.item())
    return signum


def stop(run: Run, signum: int) -> None:
    """Checkpoint the last finished step (unless it is already) and raise ``RunInterrupted``."""
    run.signals.shielded = True
    if run.saved_step != run.step and run.step > 0:
        checkpoint(run)
    raise stopped(run, signum)


# -- the run -------------------------------------------------------------------------------


class Stopwatch:
    """Training wall time across resumes: runs from ``start``, stops for what is not training
    (checkpoint writes) with ``paused()``."""

    def __init__(self, elapsed: float = 0.0, clock=time.perf_counter):
        self.clock, self._before, self._since = clock, elapsed, None

    def start(self) -> None:
        self._since = self.clock()

    def stop(self) -> None:
        if self._since is not None:
            self._before += self.clock() - self._since
            self._since = None

    @property
    def elapsed(self) -> float:
        return self._before + (self.clock() - self._since if self._since is not None else 0.0)


@dataclass
class Run:
    """Everything one training run builds, and where it stands."""

    cfg: RunConfig
    dist: DistInfo
    out: Path
    task: Task
    info: DatasetInfo
    train_loader: Any
    eval_loader: Any
    model: torch.nn.Module
    net: torch.nn.Module  # the model, wrapped for DDP under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ema: ModelEmaV3 | None
    log: MetricsLog
    total_steps: int
    step: int = 0
    watch: Stopwatch = field(default_factory=Stopwatch)
    latest_eval: dict[str, dict] = field(default_factory=dict)  # model/ema -> the last evaluation's scalars
    saved_step: int | None = None  # the step of the last checkpoint written or restored
    # {"name", "sha256"} of the backbone weights a fresh run started from (create_model records
    # them); carried by every checkpoint, so a resumed run still knows them for its summary
    backbone_weights: dict | None = None
    bar: Any = None  # the progress bar (main process)
    signals: StopSignals = field(default_factory=StopSignals)  # SIGINT / SIGTERM: stop after this step

    @property
    def ckpt_path(self) -> Path:
        return self.out / CHECKPOINT

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)


def train(cfg: RunConfig, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg`` in ``cfg.train.out_dir``. ``resume``: continue from its last.ckpt, or start
    from scratch there when it has none. Without ``resume`` a folder holding a run is refused.
    SIGINT or SIGTERM stops the run after the step in progress, checkpointed: ``RunInterrupted``
    (the folder's lock is released, the previous signal handlers restored)."""
    dist = init_distributed(cfg.train.device)
    out = Path(cfg.train.out_dir)
    lock = run = None
    try:
        with StopSignals(verbose=dist.is_main) as signals:
            if not resume:
                check_fresh_folder(out)
            if dist.is_main:
                out.mkdir(parents=True, exist_ok=True)
                lock = RunLock(out).acquire()
                remove_orphans(out)
            run = build_run(cfg, dist, resume)
            run.signals, signals.run = signals, run
            if signum := stop_requested(run):  # a signal while the run was being built
                stop(run, signum)
            run.model.train()
            run.bar = tqdm(
                total=run.total_steps,
                initial=run.step,
                disable=not dist.is_main,
                unit="step",
                dynamic_ncols=True,
            )
            run.watch.start()
            while run.step < run.total_steps:
                train_epoch(run)
                if run.step < run.total_steps and (signum := stop_requested(run)):
                    stop(run, signum)  # after the epoch's evaluation and checkpoint
            run.watch.stop()
            run.bar.close()
            return finish(run)
    finally:
        if run is not None and run.bar is not None:
            run.bar.close()  # before the caller's message (closing again is nothing)
        if lock is not None:
            lock.release()
        cleanup()


def build_run(cfg: RunConfig, dist: DistInfo, resume: bool) -> Run:
    """Data, model, optimizer, schedule and EMA as ``cfg`` says, restored from the folder's
    checkpoint when resuming; ``config.json`` is written once the checkpoint has loaded."""
    t, out = cfg.train, Path(cfg.train.out_dir)
    log = MetricsLog(out / METRICS, dist.is_main)
    if t.threads:
        torch.set_num_threads(t.threads)
    if t.deterministic:
        # cuBLAS is deterministic only with a fixed workspace; without this variable PyTorch
        # refuses CUDA matmuls under use_deterministic_algorithms. It is read when cuBLAS first
        # starts, so it holds for train.py's process, not for one that ran CUDA matmuls before
        # train() (set it yourself there). No effect on the CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(t.seed)

    state = load_checkpoint(out / CHECKPOINT) if resume and (out / CHECKPOINT).is_file() else None
    changes = {}
    if state is not None:
        changes = check_resume_config(from_saved(state["config"]), cfg, out / CHECKPOINT)
    task = get_task(cfg.task)
    train_loader, eval_loader, info = task.build_loaders(cfg, dist.rank, dist.world)
    if len(train_loader) == 0:
        raise ConfigError(
            f"data.batch_size {cfg.data.batch_size} is larger than the {train_loader.num_samples} "
            f"samples of {cfg.data.dataset} ({cfg.data.train_split}): not one training step per epoch"
        )
    if dist.is_main:
        truncate_log(out / METRICS, state["step"] if state is not None else 0)
    # A resumed run loads every weight from its checkpoint: it must not need the backbone's file.
    model = model_from_config(cfg, info, load_backbone=state is None).to(dist.device)
    cfg = resolve_speed_settings(
        cfg, model, train_loader, task, dist, state["config"] if state else None, log
    )
    t = cfg.train
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
    s = cfg.schedule
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=s.sched,
        num_epochs=s.epochs,
        warmup_epochs=s.warmup_epochs,
        warmup_lr=s.warmup_lr,
        min_lr=s.min_lr,
        step_on_epochs=False,
        updates_per_epoch=len(train_loader),
    )
    ema = ModelEmaV3(model, decay=t.ema_decay) if t.ema else None
    total_steps = s.epochs * len(train_loader)
    if t.max_steps:
        total_steps = min(total_steps, t.max_steps)
    net = DistributedDataParallel(model) if dist.world > 1 else model
    run = Run(
        cfg,
        dist,
        out,
        task,
        info,
        train_loader,
        eval_loader,
        model,
        net,
        optimizer,
        scheduler,
        ema,
        log,
        total_steps,
    )
    if state is not None:
        restore(run, state, rebuild_schedule="schedule.epochs" in changes)
    else:
        run.backbone_weights = getattr(model, "backbone_weights", None)
    if state is None and resume and dist.is_main:
        print(f"no checkpoint at {run.ckpt_path}; starting from scratch")
    if resume:
        scheduler.step_update(run.step)
    if dist.is_main:
        write_json(to_dict(cfg), out / CONFIG)  # resolved: auto settings as chosen
    return run


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The random states a checkpoint carries: the CPU's (``rng``), and the run's GPU's
    (``cuda_rng``) when it trains on CUDA, so dropout and augmentation on the GPU continue too."""
    state = {"rng": torch.get_rng_state()}
    if device.type == "cuda" and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict, device: torch.device) -> None:
    """Set the random states ``rng_state`` saved. A checkpoint without ``cuda_rng`` (written on
    the CPU, or before it was saved) leaves the GPU's as seeded; a run moved to the CPU ignores it."""
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def restore(run: Run, state: dict, rebuild_schedule: bool = False) -> None:
    """Put the checkpoint's weights, optimizer, schedule, EMA, RNG and counters into ``run``.
    With ``rebuild_schedule`` (more epochs) the scheduler keeps the one built for the new
    length, set to the checkpoint's step."""
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if not rebuild_schedule:
        run.scheduler.load_state_dict(state["scheduler"])
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    restore_rng(state, run.dist.device)
    run.step = run.saved_step = state["step"]
    run.watch = Stopwatch(state["elapsed_s"])
    run.latest_eval = state.get("latest_eval", state.get("best", {}))  # "best": older checkpoints
    run.backbone_weights = state.get("backbone_weights")
    if run.dist.is_main:
        print(f"resumed from {run.ckpt_path} at step {run.step} (epoch {run.step // run.steps_per_epoch})")


def train_epoch(run: Run) -> None:
    """The steps of the current epoch from where the run stands, then its evaluation (when
    due) and a checkpoint."""
    t = run.cfg.train
    epoch, start = divmod(run.step, run.steps_per_epoch)
    window = (time.perf_counter(), 0)
    for batch in run.train_loader.batches(epoch, start):
        loss = train_step(run, batch, epoch)
        window = log_step(run, epoch, loss, batch, window)
        run.bar.update(1)
        if t.ckpt_every_steps and run.step % t.ckpt_every_steps == 0:
            checkpoint(run)
        if run.step >= run.total_steps:
            break
        # The epoch's last step goes on to its evaluation first: train() checks after it.
        if run.step % run.steps_per_epoch and (signum := stop_requested(run)):
            stop(run, signum)
    epoch_done = run.step % run.steps_per_epoch == 0
    if t.eval_every_epochs and (
        (epoch_done and (epoch + 1) % t.eval_every_epochs == 0) or run.step >= run.total_steps
    ):
        evaluate_now(run, epoch)
    checkpoint(run)


def train_step(run: Run, batch, epoch: int) -> torch.Tensor:
    """One optimizer step on ``batch``; the loss, detached."""
    t = run.cfg.train
    batch = run.task.to_device(batch, run.dist.device, t.channels_last)
    with autocast(t.amp_bf16, run.dist.device):
        loss = run.task.loss(run.net, batch, run.cfg)
    if not torch.isfinite(loss):
        raise NonFiniteLossError(
            f"loss is {loss.item()} at step {run.step} (epoch {epoch}); stopping. {last_good(run)} "
            "Try a lower optim.lr, optim.clip_grad > 0, or train.amp_bf16=false."
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.cfg.optim.clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.optim.clip_grad)
    run.optimizer.step()
    run.step += 1
    run.scheduler.step_update(run.step)
    if run.ema is not None:
        run.ema.update(run.model, step=run.step)
    return loss.detach()


def log_step(run: Run, epoch: int, loss, batch, window: tuple[float, int]) -> tuple[float, int]:
    """Every ``log_every_steps`` (and at the last step) a train record; the throughput window."""
    since, seen = window[0], window[1] + run.task.batch_size(batch) * run.dist.world
    if run.step % run.cfg.train.log_every_steps and run.step != run.total_steps:
        return since, seen
    now = time.perf_counter()
    ips, lr = seen / (now - since), run.optimizer.param_groups[0]["lr"]
    run.log.write(
        kind="train", epoch=epoch, step=run.step, loss=round(loss.item(), 5), lr=lr, img_per_s=round(ips, 1)
    )
    run.bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.4g}", img_s=f"{ips:.0f}")
    return now, 0


def last_good(run: Run) -> str:
    if run.saved_step is None:
        return f"No checkpoint was written yet ({run.ckpt_path} does not exist)."
    return f"The last good checkpoint, {run.ckpt_path} at step {run.saved_step}, is kept."


def _finite(state: dict) -> bool:
    return all(
        torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v) and v.is_floating_point()
    )


def checkpoint(run: Run) -> None:
    """Write last.ckpt (main process) if the weights are finite; refuse to go on if they are not."""
    if not run.dist.is_main:
        return
    model_state = run.model.state_dict()
    ema_state = run.ema.state_dict() if run.ema is not None else None
    if not _finite(model_state) or (ema_state is not None and not _finite(ema_state)):
        raise NonFiniteLossError(
            f"the weights hold NaN or inf after step {run.step}; stopping without checkpointing them. "
            f"{last_good(run)} Try a lower optim.lr, optim.clip_grad > 0, or train.amp_bf16=false."
        )
    run.watch.stop()
    save_checkpoint(
        {
            "model": model_state,
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "ema": ema_state,
            **rng_state(run.dist.device),
            "step": run.step,
            "elapsed_s": run.watch.elapsed,
            "latest_eval": run.latest_eval,
            "backbone_weights": run.backbone_weights,
            "config": to_dict(run.cfg),
            "info": run.info.to_dict(),
        },
        run.ckpt_path,
    )
    run.saved_step = run.step
    run.watch.start()


def evaluate_now(run: Run, epoch: int) -> None:
    """Evaluate the model (and its EMA) on the eval split; log it and keep it as the latest."""
    t = run.cfg.train
    models = {"model": run.model} | ({"ema": run.ema.module} if run.ema is not None else {})
    for which, model in models.items():
        r = evaluate(model, run.eval_loader, run.task, run.info, t.channels_last, run.dist.device)
        scalars = {k: v for k, v in r.items() if isinstance(v, (int, float))}
        run.log.write(
            kind="eval",
            which=which,
            epoch=epoch,
            step=run.step,
            elapsed_s=round(run.watch.elapsed, 1),
            **scalars,
        )
        run.latest_eval[which] = scalars
    if run.dist.is_main:
        print(
            f"epoch {epoch}: "
            + "  ".join(f"{w} {k}={v}" for w, r in run.latest_eval.items() for k, v in r.items())
        )


def finish(run: Run) -> dict[str, Any]:
    """Export the final weights (the EMA's when kept) and the summary."""
    final = run.ema.module if run.ema is not None else run.model
    which = "ema" if run.ema is not None else "model"
    summary = {
        "step": run.step,
        "train_wall_time_s": round(run.watch.elapsed, 1),
        "final": run.latest_eval.get(which, {}),
        "eval_of": which,
        "device": describe_device(run.dist.device),  # the time above means little without it
        "torch": torch.__version__,
        "info": run.info.to_dict(),
    }
    if run.backbone_weights is not None:  # what the manifest records for a weight trained so
        summary["backbone_weights"] = run.backbone_weights
    if run.dist.is_main:
        meta = {"config": to_dict(run.cfg), "info": run.info.to_dict()}
        save_weights(final.state_dict(), run.out / WEIGHTS, meta)
        write_json(summary, run.out / SUMMARY)
        print(f"done: {run.step} steps in {run.watch.elapsed / 60:.1f} min; weights at {run.out / WEIGHTS}")
    return summary

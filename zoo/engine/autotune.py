"""Choose bf16 autocast and channels_last by timing the real model on this machine.

Both switches change CPU training speed by 2x or more, in either direction, depending on
the model *and the CPU*. ResNet-20 on Fashion-MNIST, batch 128 (``python -m zoo.bench
train``): on an AMD Zen 4 (AVX-512 BF16, oneDNN runs bf16 natively) bf16 autocast +
channels_last trained at 1159 img/s against 749 for float32 channels_last; on an AMD Zen 3
(AVX2, no native bf16) the same autocast is emulated, and forward + backward ran 9-21x
*slower* than float32 channels_last (two runs). A recipe that hard-codes one choice
is right on one machine and wrong on the other, so ``train.amp_bf16: auto`` and
``train.channels_last: auto`` time a few forward + backward passes of the model on a real
training batch for each candidate setting and keep the fastest.

The probe works on copies of the model under a forked RNG and takes no optimizer step, so
the run that follows is exactly the run configured with the chosen values: same weights,
same data, same random numbers.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

AUTO = "auto"


def autocast(enabled: bool, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext()


def native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX-512 BF16 or AMX). Without it, CPU
    autocast emulates bf16 and is usually several times slower than float32."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


@dataclass
class Trial:
    amp_bf16: bool
    channels_last: bool
    seconds: float  # median seconds per forward + backward step, warm-up excluded
    steps: int  # timed steps behind the median
    warmup_seconds: float  # the first step, which also pays for one-off kernel setup
    abandoned: bool = False  # stopped after one timed step, already far behind the best

    @property
    def label(self) -> str:
        return f"{'bf16' if self.amp_bf16 else 'fp32'}, {'channels_last' if self.channels_last else 'NCHW'}"


def candidates(amp_bf16: bool | str, channels_last: bool | str) -> list[tuple[bool, bool]]:
    """Every (amp_bf16, channels_last) pair the config allows; float32 first, so the
    cheap settings set the bar before an emulated bf16 one can waste time."""
    bf16 = [False, True] if amp_bf16 == AUTO else [bool(amp_bf16)]
    cl = [True, False] if channels_last == AUTO else [bool(channels_last)]
    return [(b, c) for b in bf16 for c in cl]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a clock reading after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_settings(
    model: torch.nn.Module,
    batch: Any,
    task,
    cfg,
    device: torch.device,
    settings: list[tuple[bool, bool]],
    steps: int = 3,
    give_up: float = 3.0,
    clock=time.perf_counter,
) -> list[Trial]:
    """Median seconds per forward + backward step of ``model`` on ``batch`` for each setting.

    Each setting gets a fresh copy of the model, one warm-up step and ``steps`` timed
    steps; one whose first timed step already takes ``give_up`` times the best median so far
    is abandoned there (an emulated bf16 step can take seconds). Warm-up steps are never
    compared: they pay for one-off kernel setup that differs between settings. Nothing of
    the caller's state changes: not the model, not the global RNG. ``clock`` (seconds) is
    injectable, so tests can be exact.
    """
    trials: list[Trial] = []
    best = math.inf
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        for bf16, cl in settings:
            probe = copy.deepcopy(model).train()
            if cl:
                probe = probe.to(memory_format=torch.channels_last)
            on_device = task.to_device(batch, device, cl)
            times = []
            for i in range(steps + 1):
                synchronize(device)
                start = clock()
                with autocast(bf16, device):
                    loss = task.loss(probe, on_device, cfg)
                loss.backward()
                probe.zero_grad(set_to_none=True)
                synchronize(device)
                times.append(clock() - start)
                if i == 1 and steps > 1 and times[1] > give_up * best:
                    break
            timed = times[1:]
            abandoned = len(timed) < steps
            trials.append(Trial(bf16, cl, statistics.median(timed), len(timed), times[0], abandoned))
            best = min(best, trials[-1].seconds)
            del probe
    return trials


def fastest(trials: list[Trial]) -> Trial:
    return min(trials, key=lambda t: t.seconds)


def describe(trials: list[Trial], batch_size: int) -> str:
    """One line per setting: img/s of forward + backward, the chosen one marked."""
    chosen = fastest(trials)
    lines = []
    for t in trials:
        note = "  <- chosen" if t is chosen else "  (abandoned after one step)" if t.abandoned else ""
        lines.append(f"  {t.label:<20} {batch_size / t.seconds:7.0f} img/s{note}")
    return "\n".join(lines)

"""Epoch loaders: deterministic batch order that a resumed or multi-process run can reproduce.

A loader yields batches of epoch ``e`` starting at step ``s``; the order depends only on
(seed, epoch), and augmentation only on (seed, epoch, step), so a run resumed at step ``s``
sees exactly what an uninterrupted one would have seen. Under torchrun each process takes
its contiguous shard of every global batch.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

import torch
import torch.nn.functional as F

from .batch_aug import BatchAugment, normalize
from .classification import TensorDataset

T = TypeVar("T")


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_000_003 + step) % (2**63))


class InMemoryLoader:
    """Batches of an in-memory uint8 image dataset, augmented as whole batches."""

    def __init__(
        self,
        data: TensorDataset,
        batch_size: int,
        train: bool,
        seed: int = 0,
        augment: BatchAugment | None = None,
        rank: int = 0,
        world: int = 1,
        size: tuple[int, int] | None = None,
        prefetch: int = 1,
    ):
        if batch_size % world:
            raise ValueError(f"global batch size {batch_size} must be divisible by the {world} processes")
        self.data, self.batch_size, self.train, self.seed = data, batch_size, train, seed
        self.augment, self.rank, self.world = augment, rank, world
        # Training batches made this many steps ahead by a background thread (0: in line).
        self.prefetch = prefetch
        self.local_batch = batch_size // world
        # Without augmentation: the images resized to this (H, W) (bilinear, antialiased), when
        # it differs from the stored size; None keeps them as they are.
        stored = tuple(data.images.shape[-2:])
        self.size = tuple(size) if size is not None and tuple(size) != stored else None

    @property
    def num_samples(self) -> int:
        return len(self.data)

    def __len__(self) -> int:
        """Steps per epoch (training drops the last partial batch)."""
        n = len(self.data)
        return n // self.batch_size if self.train else math.ceil(n / self.batch_size)

    def batches(self, epoch: int = 0, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        made = self._batches(epoch, start_step)
        # Each batch's randomness is its own generator's, so making it early changes nothing.
        return prefetched(made, self.prefetch) if self.train else made

    def _batches(self, epoch: int, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.data)
        if self.train:
            order = torch.randperm(n, generator=step_generator(self.seed, epoch, -1))
        else:
            order = torch.arange(n)
        for step in range(start_step, len(self)):
            idx = order[step * self.batch_size : (step + 1) * self.batch_size]
            if self.train:
                idx = idx[self.rank * self.local_batch : (self.rank + 1) * self.local_batch]
            x = self.data.images[idx].float().div_(255)
            if self.augment is not None:
                x = self.augment(x, step_generator(self.seed, epoch, step), self.rank, self.world)
            else:
                if self.size is not None:
                    x = F.interpolate(x, size=self.size, mode="bilinear", antialias=True, align_corners=False)
                x = normalize(x, self.data.mean, self.data.std)
            yield x, self.data.labels[idx]

    def __iter__(self):
        return self.batches(0)


def prefetched(items: Iterator[T], depth: int) -> Iterator[T]:
    """``items``, made up to ``depth`` ahead by a background thread, so that making a batch
    (indexing, uint8 to float, the batch augmentation: about 15% of a resnet18 step at 112 px
    on two cores) overlaps the model's step, as a DataLoader's workers would, without a
    process. Only for iterators whose randomness comes from their own generators: the thread
    must not draw from (or reseed) the global RNG that dropout and DropPath use. An error in
    the thread is raised here; closing the iterator stops the thread."""
    if depth <= 0:
        yield from items
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stopped = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not stopped.is_set():
            try:
                slots.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as err:  # handed to the consumer, which raises it
            put((end, err))

    thread = threading.Thread(target=work, name="zoo-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, err = slots.get()
            if item is end:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stopped.set()
        thread.join()


class SampleLoader:
    """Batches of a map-style dataset with per-sample transforms (segmentation, detection).

    ``dataset[i]`` returns a sample (for example ``(image, mask)`` or ``(image, target)``);
    ``transform(sample)`` runs under a torch RNG seeded by (seed, epoch, i), so torchvision's
    v2 random transforms draw the same values in a resumed or multi-process run, and the
    global RNG (dropout, DropPath) is left untouched. ``collate(list_of_samples)`` makes the
    batch. Work happens in the main process: with 2 cores, worker processes would only take
    cores from the model, so datasets decode their files once and keep them in memory.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        train: bool,
        collate,
        seed: int = 0,
        transform=None,
        rank: int = 0,
        world: int = 1,
    ):
        if batch_size % world:
            raise ValueError(f"global batch size {batch_size} must be divisible by the {world} processes")
        self.dataset, self.batch_size, self.train, self.collate = dataset, batch_size, train, collate
        self.seed, self.transform, self.rank, self.world = seed, transform, rank, world
        self.local_batch = batch_size // world

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.train else math.ceil(n / self.batch_size)

    def _sample(self, epoch: int, index: int):
        sample = self.dataset[index]
        if self.transform is None:
            return sample
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_generator(self.seed, epoch, index).initial_seed())
            return self.transform(sample)

    def batches(self, epoch: int = 0, start_step: int = 0):
        n = len(self.dataset)
        order = (
            torch.randperm(n, generator=step_generator(self.seed, epoch, -1))
            if self.train
            else torch.arange(n)
        )
        for step in range(start_step, len(self)):
            idx = order[step * self.batch_size : (step + 1) * self.batch_size]
            if self.train:
                idx = idx[self.rank * self.local_batch : (self.rank + 1) * self.local_batch]
            yield self.collate([self._sample(epoch, int(i)) for i in idx])

    def __iter__(self):
        return self.batches(0)

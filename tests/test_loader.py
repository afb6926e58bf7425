import threading

import pytest
import torch

from zoo.data.batch_aug import BatchAugment
from zoo.data.classification import TensorDataset
from zoo.data.loader import InMemoryLoader, prefetched


def _dataset(n=40, size=16):
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    return TensorDataset(images, labels, [str(i) for i in range(10)], (0.5,) * 3, (0.25,) * 3)


def _loader(prefetch):
    augment = BatchAugment((0.5,) * 3, (0.25,) * 3, crop_padding=0, rrc_scale=(0.3, 1.0), size=(12, 12))
    return InMemoryLoader(_dataset(), 8, True, seed=5, augment=augment, prefetch=prefetch)


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "zoo-prefetch"]


def test_prefetched_batches_are_the_in_line_ones_in_order():
    for epoch, start in [(0, 0), (2, 3)]:
        inline = list(_loader(0).batches(epoch, start))
        rng = torch.get_rng_state()
        ahead = list(_loader(2).batches(epoch, start))
        assert torch.equal(torch.get_rng_state(), rng)  # the thread left the global RNG alone
        assert len(ahead) == len(inline) == 5 - start
        for (x, y), (xa, ya) in zip(inline, ahead):
            assert torch.equal(x, xa) and torch.equal(y, ya)


def test_prefetch_error_reaches_the_consumer_and_close_stops_the_thread():
    def failing():
        yield 1
        raise RuntimeError("bad batch 2")

    items = prefetched(failing(), 1)
    assert next(items) == 1
    with pytest.raises(RuntimeError, match="bad batch 2"):
        next(items)

    batches = _loader(1).batches(0)
    next(batches)
    assert _prefetch_threads()
    batches.close()  # what a training loop that breaks early does
    assert not _prefetch_threads()

import torch

from zoo.data.batch_aug import BatchAugment, normalize, random_crop
from zoo.data.loader import step_generator


def _images(n=16, size=12):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(1))


def test_crop_is_a_shifted_window_of_the_padded_image():
    x = _images()
    out = random_crop(x, 2, torch.Generator().manual_seed(0), len(x), slice(None))
    padded = torch.nn.functional.pad(x, (2,) * 4)
    for i in range(len(x)):
        windows = [padded[i, :, dy : dy + 12, dx : dx + 12] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert not torch.equal(out, x)  # at least one image moved


def test_flip_and_normalisation_without_crop():
    x = _images()
    aug = BatchAugment((0.5,), (0.25,), crop_padding=0, hflip=True)
    out = aug(x, torch.Generator().manual_seed(0))
    plain, flipped = normalize(x, (0.5,), (0.25,)), normalize(x.flip(-1), (0.5,), (0.25,))
    is_plain = [torch.allclose(o, p) for o, p in zip(out, plain)]
    is_flip = [torch.allclose(o, f) for o, f in zip(out, flipped)]
    assert all(a or b for a, b in zip(is_plain, is_flip))
    assert any(is_plain) and any(is_flip)


def test_random_erasing_changes_some_images_only_inside_a_rectangle():
    x = _images(64, 20)
    aug = BatchAugment((0.0,), (1.0,), crop_padding=0, hflip=False, random_erasing=0.5)
    out = aug(x, torch.Generator().manual_seed(0))
    changed = (out != x).flatten(1).any(1)
    assert 10 < changed.sum() < 54  # about half of 64
    for i in torch.nonzero(changed).flatten():
        ys, xs = torch.nonzero(out[i, 0] != x[i, 0], as_tuple=True)
        box = (
            out[i, 0, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
            != x[i, 0, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        )
        assert box.float().mean() > 0.95  # the erased pixels fill their bounding box


def test_same_seed_same_batch_and_shards_match_the_global_batch():
    x = _images(16)
    aug = BatchAugment((0.5,), (0.5,), crop_padding=2, hflip=True, random_erasing=0.5)
    full = aug(x, step_generator(0, 3, 7))
    assert torch.equal(full, aug(x, step_generator(0, 3, 7)))
    assert not torch.equal(full, aug(x, step_generator(0, 3, 8)))
    halves = [aug(x[r * 8 : (r + 1) * 8], step_generator(0, 3, 7), rank=r, world=2) for r in range(2)]
    assert torch.equal(torch.cat(halves), full)

import torch

from zoo.data.batch_aug import BatchAugment, normalize, random_crop, random_resized_crop
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


def _ramp(n=8, size=32):
    """Images whose pixel value encodes its position: a crop's values tell where it came from."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    ramp = (ys * size + xs).float() / (size * size)
    return ramp.expand(n, 3, size, size).clone() + torch.arange(n).float().view(n, 1, 1, 1)


def test_random_resized_crop_shapes_and_one_box_per_image():
    n, size = 8, 32
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    # channel 0: the row, 1: the column, 2: the image's index: a crop's values say where it came from
    x = torch.stack(
        [
            ys.expand(n, size, size),
            xs.expand(n, size, size),
            torch.arange(n).float().view(n, 1, 1).expand(n, size, size),
        ],
        1,
    )
    out = random_resized_crop(
        x, (16, 16), (0.2, 0.6), (3 / 4, 4 / 3), torch.Generator().manual_seed(0), n, slice(None)
    )
    assert out.shape == (n, 3, 16, 16)
    assert torch.equal(out[:, 2], torch.arange(n).float().view(n, 1, 1).expand(n, 16, 16))  # its own image
    boxes = []
    for i in range(n):
        # the span of source positions the 16 samples cover: the box less about one output pixel
        height = out[i, 0].max() - out[i, 0].min()
        width = out[i, 1].max() - out[i, 1].min()
        h, w = height * 16 / 15, width * 16 / 15  # the box's sides (samples sit at pixel centres)
        assert 0.2 * 1024 * 0.85 <= h * w <= 0.6 * 1024 * 1.05, (i, float(h), float(w))
        assert 3 / 4 * 0.85 <= w / h <= 4 / 3 * 1.15 or min(h, w) > 31  # clipped at the image's side
        boxes.append((round(float(out[i, 0].min()), 2), round(float(out[i, 1].min()), 2)))
    assert len(set(boxes)) == n  # a different box per image


def test_random_resized_crop_of_the_whole_image_at_its_size_is_the_image():
    x = _ramp(4, 16)
    out = random_resized_crop(
        x, (16, 16), (1.0, 1.0), (1.0, 1.0), torch.Generator().manual_seed(0), 4, slice(None)
    )
    assert torch.allclose(out, x, atol=1e-5)


def test_batch_augment_resized_crop_is_deterministic_and_shards_match():
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    aug = BatchAugment((0.5,) * 3, (0.25,) * 3, crop_padding=0, rrc_scale=(0.35, 1.0), size=(24, 24))
    full = aug(x, step_generator(0, 1, 2))
    assert full.shape == (16, 3, 24, 24)
    assert torch.equal(full, aug(x, step_generator(0, 1, 2)))
    assert not torch.equal(full, aug(x, step_generator(0, 1, 3)))
    halves = [aug(x[r * 8 : (r + 1) * 8], step_generator(0, 1, 2), rank=r, world=2) for r in range(2)]
    assert torch.equal(torch.cat(halves), full)


def test_batch_augment_refuses_two_crops_and_bad_scales():
    import pytest

    with pytest.raises(ValueError, match="choose one crop"):
        BatchAugment((0.5,), (0.5,), crop_padding=4, rrc_scale=(0.35, 1.0))
    with pytest.raises(ValueError, match="rrc_scale"):
        BatchAugment((0.5,), (0.5,), crop_padding=0, rrc_scale=(0.0, 1.0))

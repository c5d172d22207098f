import torch

from ntlr_bench.batching import crop_flip, index_batches, normalize, num_batches


def test_index_batches_cover_every_example_once():
    batches = list(index_batches(10, 4, generator=torch.Generator().manual_seed(0), shuffle=True))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))


def test_index_batches_drop_the_short_last_batch_but_never_the_only_one():
    g = torch.Generator().manual_seed(0)
    assert [len(b) for b in index_batches(10, 4, generator=g, shuffle=True, drop_last=True)] == [4, 4]
    assert [len(b) for b in index_batches(12, 4, generator=g, shuffle=True, drop_last=True)] == [4, 4, 4]
    # Fewer examples than a batch: the one full-data batch stays.
    assert [len(b) for b in index_batches(3, 4, generator=g, shuffle=True, drop_last=True)] == [3]
    for n, bs in [(10, 4), (12, 4), (3, 4), (5000, 128), (1, 1)]:
        for drop in (False, True):
            batches = list(index_batches(n, bs, generator=g, shuffle=False, drop_last=drop))
            assert len(batches) == num_batches(n, bs, drop_last=drop)
    assert num_batches(5000, 128, drop_last=True) == 39 and num_batches(5000, 128, drop_last=False) == 40


def test_index_batches_depend_only_on_the_seed():
    a = torch.cat(list(index_batches(50, 7, generator=torch.Generator().manual_seed(3), shuffle=True)))
    b = torch.cat(list(index_batches(50, 7, generator=torch.Generator().manual_seed(3), shuffle=True)))
    c = torch.cat(list(index_batches(50, 7, generator=torch.Generator().manual_seed(4), shuffle=True)))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_normalize_standardises_per_channel():
    images = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    mean = torch.tensor([0.5, 0.0, 1.0]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 1.0, 2.0]).view(1, 3, 1, 1)
    out = normalize(images, mean, std)
    assert out.dtype == torch.float32
    assert torch.allclose(out[:, 0], torch.ones(2, 4, 4)) and torch.allclose(out[:, 2], torch.zeros(2, 4, 4))


def _reference_crop_flip(image, dy, dx, flip, padding):
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    h, w = image.shape[1:]
    crop = padded[:, dy : dy + h, dx : dx + w]
    return crop.flip(2) if flip else crop


def test_crop_flip_matches_a_per_image_reference():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(5)
    out = crop_flip(images, padding=2, generator=gen)
    # Replay the same draws to build the per-image reference.
    gen = torch.Generator().manual_seed(5)
    dy = torch.randint(0, 5, (16,), generator=gen)
    dx = torch.randint(0, 5, (16,), generator=gen)
    flip = torch.rand(16, generator=gen) < 0.5
    for i in range(16):
        expected = _reference_crop_flip(images[i], int(dy[i]), int(dx[i]), bool(flip[i]), 2)
        assert torch.equal(out[i], expected), i
    assert out.shape == images.shape and out.dtype == torch.uint8

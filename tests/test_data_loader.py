"""DeviceLoader: layout, sharding across ranks, cheap resume, worker threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alexnet.data.loader import DeviceLoader
from alexnet.data.pack import prepare
from alexnet.data.packed import open_dataset
from alexnet.data.sources import ArraySource

N = 103


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    """Image i is filled with value i (so a batch tells which samples it holds)."""
    root = tmp_path_factory.mktemp("loader") / "packed"
    images = np.broadcast_to(np.arange(N, dtype=np.uint8)[:, None, None, None], (N, 5, 4, 3))
    rng = np.random.default_rng(3)
    images = np.ascontiguousarray(images)
    images[:, 1, 2] = rng.integers(0, 256, (N, 3))  # a distinct pixel to check the layout
    labels = np.arange(N) % 7
    splits = {"train": (images, labels), "val": (images[:5], labels[:5])}
    src = ArraySource("t", [str(i) for i in range(7)], splits, {})
    prepare(src, root, progress=False)
    return open_dataset(root)


def _ids(batches):
    return [x[:, 0, 0, 0].tolist() for x, _ in batches]


def test_batch_layout_and_labels(ds):
    loader = DeviceLoader(ds, 8, shuffle=True, drop_last=True, seed=1)
    x, y = next(iter(loader.iterate()))
    assert x.dtype == torch.uint8 and x.shape == (8, 3, 5, 4) and y.dtype == torch.int64
    for b in range(8):
        i = int(x[b, 0, 0, 0])
        assert torch.equal(x[b].permute(1, 2, 0), torch.from_numpy(np.array(ds.images[i])))
        assert int(y[b]) == ds.labels[i]


def test_eval_two_ranks_cover_every_sample_once(ds):
    seen = []
    lens = []
    for rank in range(2):
        loader = DeviceLoader(ds, 10, shuffle=False, drop_last=False, rank=rank, world_size=2)
        batches = _ids(loader.iterate())
        lens.append(len(loader))
        assert len(batches) == len(loader)
        seen += [i for b in batches for i in b]
    assert sorted(seen) == list(range(N))  # each once, no padding
    assert lens == [6, 5]  # 103 = 5 full global batches of 20, then 3 for rank 0 only


def test_train_sharding_equals_one_process(ds):
    one = DeviceLoader(ds, 8, shuffle=True, drop_last=True, seed=4)
    two = [DeviceLoader(ds, 4, shuffle=True, drop_last=True, seed=4, rank=r, world_size=2)
           for r in range(2)]  # fmt: skip
    for epoch in (0, 1):
        for loader in [one, *two]:
            loader.set_epoch(epoch)
        ref = _ids(one.iterate())
        r0, r1 = _ids(two[0].iterate()), _ids(two[1].iterate())
        assert len(ref) == len(r0) == len(r1) == N // 8
        assert [a + b for a, b in zip(r0, r1, strict=True)] == ref
        flat = [i for b in ref for i in b]
        assert len(set(flat)) == len(flat) == (N // 8) * 8
    one.set_epoch(0)
    e0 = _ids(one.iterate())
    one.set_epoch(1)
    assert _ids(one.iterate()) != e0
    one.set_epoch(0)
    assert _ids(one.iterate()) == e0  # deterministic in (seed, epoch)
    other = DeviceLoader(ds, 8, shuffle=True, drop_last=True, seed=5)
    assert _ids(other.iterate()) != e0


def test_start_batch_and_workers(ds):
    loader = DeviceLoader(ds, 6, shuffle=True, drop_last=False, seed=2, workers=0)
    full = list(loader.iterate())
    assert len(full) == len(loader) == -(-N // 6)
    assert _ids(loader.iterate(start_batch=5)) == _ids(full)[5:]
    threaded = DeviceLoader(ds, 6, shuffle=True, drop_last=False, seed=2, workers=2)
    got = list(threaded.iterate())
    assert len(got) == len(full)
    for (xa, ya), (xb, yb) in zip(full, got, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    skipped_reads = []
    real = loader._gather
    loader._gather = lambda idx: (skipped_reads.append(len(idx)), real(idx))[1]
    list(loader.iterate(start_batch=15))
    assert sum(skipped_reads) == N - 15 * 6  # skipped batches are never read


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_pinned(ds):
    loader = DeviceLoader(ds, 8, shuffle=False, drop_last=False, device="cuda", workers=2)
    x, y = next(iter(loader.iterate()))
    assert x.is_cuda and y.is_cuda and loader.pin
    assert x[:, 0, 0, 0].tolist() == list(range(8))


@pytest.mark.parametrize("workers", [0, 2])
def test_transform_in_loader_equals_transform_after(ds, workers):
    from alexnet.data.augment import TrainTransform

    st = ds.stats
    tf = TrainTransform(3, eigval=st.eigval, eigvec=st.eigvec, mean_image=st.mean_image)
    loader = DeviceLoader(ds, 8, shuffle=True, drop_last=True, seed=3, workers=workers)
    assert tf.fuses(ds.image_size, loader.device)
    loader.set_epoch(1)
    gen = torch.Generator().manual_seed(4)
    fused = list(loader.iterate(start_batch=2, transform=tf, generator=gen))
    g = torch.Generator().manual_seed(4)
    after = [(tf(x, g).clone(), y) for x, y in loader.iterate(start_batch=2)]
    assert len(fused) == len(after) == N // 8 - 2
    for (xa, ya), (xb, yb) in zip(fused, after, strict=True):  # all held: none overwritten
        assert xa.shape == (8, 3, 3, 3) and xa.dtype == torch.float32
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("pad", [0, 2])  # pad 0 on the CPU: augmentation in the loader threads
def test_transform_in_loader_equals_transform_after_loader(tmp_path, workers, pad):
    """The training loop hands the augmentation to the loader (per-batch generators seeded by
    position); every batch must be bitwise the one that augmenting after the loader gives."""
    from train_helpers import write_packed

    from alexnet.checkpoint import step_generator, step_seed
    from alexnet.data.augment import TrainTransform
    from alexnet.data.packed import open_dataset

    ds = open_dataset(write_packed(tmp_path / "d", n_train=40, n_val=8, size=20), "train")
    mean_image = np.asarray(ds.stats.mean_image, dtype=np.float32)
    tf = TrainTransform(16, pad=pad, mean_image=mean_image)
    assert tf.fuses((20, 20), "cpu") == (pad == 0)

    def gen(k):
        return step_generator(torch.device("cpu"), step_seed(5, 1, k, 0))

    loader = DeviceLoader(ds, 8, shuffle=True, drop_last=True, seed=5, workers=workers)
    loader.set_epoch(1)
    fused = [(x.clone(), y.clone()) for x, y in loader.iterate(1, transform=tf, generator=gen)]
    plain = [(tf(x, gen(k + 1)).clone(), y) for k, (x, y) in enumerate(loader.iterate(1))]
    assert len(fused) == len(plain) == 4
    for (a, ya), (b, yb) in zip(fused, plain):
        assert torch.equal(ya, yb)
        assert torch.equal(a, b)

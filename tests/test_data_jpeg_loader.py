"""DeviceLoader on JPEG datasets: the images and order of a hand decode, augmentation in the
threads equal to after the loader, the CUDA decode path chosen only on CUDA (stubbed decoder
on the CPU), damaged records stopping the run with their name; one draw for both paths."""

from __future__ import annotations

import io

import data_helpers as dh
import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.data import loader as loader_mod
from alexnet.data.augment import Draws, TrainTransform
from alexnet.data.fields import DamagedRecord
from alexnet.data.loader import DeviceLoader, epoch_permutation
from alexnet.data.pack import prepare
from alexnet.data.packed import open_dataset

# torchvision 0.29 marks its image codecs deprecated (loader.py silences it outside tests)
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")

N = 45


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """The same photos packed raw and as JPEG."""
    root = tmp_path_factory.mktemp("jpeg_loader")
    src = dh.photo_source(n=N, n_val=5, size=24, gray_every=7)
    prepare(src, root / "raw", progress=False)
    prepare(src, root / "jpeg", encoding="jpeg", quality=90, progress=False, workers=1)
    return open_dataset(root / "raw"), open_dataset(root / "jpeg"), root


def _by_hand(root, split: str = "train") -> np.ndarray:
    data = (root / "jpeg" / f"{split}_images.jpeg").read_bytes()
    off = np.load(root / "jpeg" / f"{split}_offsets.npy")
    recs = [data[off[i] : off[i + 1]] for i in range(len(off) - 1)]
    return np.stack([np.asarray(Image.open(io.BytesIO(r)).convert("RGB")) for r in recs])


@pytest.mark.parametrize("workers", [0, 2])
def test_jpeg_batches_are_the_hand_decoded_images_in_the_raw_order(packed, workers):
    raw, jp, root = packed
    want = _by_hand(root)
    a = DeviceLoader(raw, 8, shuffle=True, drop_last=False, seed=3, workers=workers)
    b = DeviceLoader(jp, 8, shuffle=True, drop_last=False, seed=3, workers=workers)
    a.set_epoch(2), b.set_epoch(2)
    order = epoch_permutation(N, 3, 2)
    got_raw, got_jpeg = list(a.iterate(start_batch=1)), list(b.iterate(start_batch=1))
    assert len(got_jpeg) == len(got_raw) == len(b) - 1
    for k, ((xr, yr), (xj, yj)) in enumerate(zip(got_raw, got_jpeg, strict=True), start=1):
        idx = order[k * 8 : (k + 1) * 8]
        assert xj.shape == xr.shape and xj.dtype == torch.uint8 and xj.stride() == xr.stride()
        assert torch.equal(yj, yr) and yj.tolist() == jp.labels[idx].tolist()
        assert np.array_equal(xj.permute(0, 2, 3, 1).numpy(), want[idx])


def test_two_ranks_of_a_jpeg_dataset_see_each_sample_once(packed):
    _, jp, _ = packed
    seen = []
    for rank in range(2):
        loader = DeviceLoader(jp, 4, shuffle=False, drop_last=False, rank=rank, world_size=2)
        seen += [int(y) for _, ys in loader.iterate() for y in ys]
    assert sorted(seen) == sorted(jp.labels.tolist()) and len(seen) == N


@pytest.mark.parametrize("workers", [0, 2])
def test_augmentation_in_the_threads_equals_augmenting_the_decoded_batches(packed, workers):
    raw, jp, root = packed
    st = jp.stats
    tf = TrainTransform(20, eigval=st.eigval, eigvec=st.eigvec, mean_image=st.mean_image)
    loader = DeviceLoader(jp, 8, shuffle=True, drop_last=True, seed=5, workers=workers)
    loader.set_epoch(1)

    def gen(k):
        return torch.Generator().manual_seed(100 + k)

    fused = [(x.clone(), y) for x, y in loader.iterate(1, transform=tf, generator=gen)]
    want = _by_hand(root)
    order = epoch_permutation(N, 5, 1)
    assert len(fused) == N // 8 - 1
    for k, (x, y) in enumerate(fused, start=1):
        idx = order[k * 8 : (k + 1) * 8]
        batch = torch.from_numpy(np.ascontiguousarray(want[idx])).permute(0, 3, 1, 2)
        assert torch.equal(x, tf(batch, gen(k))) and y.tolist() == jp.labels[idx].tolist()


def test_the_gpu_decoder_is_chosen_only_on_cuda(packed, monkeypatch):
    raw, jp, root = packed
    assert jp.images.decodes_on_device and not raw.images.decodes_on_device
    calls = []

    def stub(records, device):  # stands in for nvJPEG: decodes on the CPU, notes the call
        calls.append(([bytes(r) for r in records], torch.device(device)))
        out = np.stack([np.asarray(Image.open(io.BytesIO(bytes(r))).convert("RGB"))
                        for r in records])  # fmt: skip
        return torch.from_numpy(out).permute(0, 3, 1, 2)

    monkeypatch.setattr(loader_mod, "decode_batch_device", stub)
    for ds in (raw, jp):  # on a CPU device neither dataset calls the GPU decoder
        list(DeviceLoader(ds, 8, shuffle=False, drop_last=False).iterate())
    on_cuda = DeviceLoader(raw, 8, shuffle=False, drop_last=False, device="cuda:1")
    monkeypatch.setattr(on_cuda, "_send", lambda t: t)  # no CUDA here: batches stay put
    list(on_cuda.iterate())  # raw pixels on CUDA: nothing to decode
    assert calls == []
    loader = DeviceLoader(jp, 8, shuffle=False, drop_last=False, device="cuda", workers=2)
    monkeypatch.setattr(loader, "_send", lambda t: t)  # no CUDA here: labels stay put
    monkeypatch.setattr(loader, "_gather", None)  # the host decode path must not run
    batches = list(loader.iterate())
    assert len(calls) == len(batches) == len(loader)
    want, data = _by_hand(root), jp.images
    for k, ((x, y), (recs, dev)) in enumerate(zip(batches, calls, strict=True)):
        assert dev == torch.device("cuda") and len(recs) == len(x)
        assert y.tolist() == jp.labels[8 * k : 8 * k + len(x)].tolist()
        assert recs == [bytes(data.stored(i)) for i in range(8 * k, 8 * k + len(x))]
        assert np.array_equal(x.permute(0, 2, 3, 1).numpy(), want[8 * k : 8 * k + len(x)])


def test_a_damaged_record_stops_the_loader_with_its_name(tmp_path, monkeypatch):
    prepare(dh.photo_source(n=20, size=16), tmp_path / "j", encoding="jpeg", progress=False)
    off = np.load(tmp_path / "j" / "train_offsets.npy")
    dh.flip_bit(tmp_path / "j" / "train_images.jpeg", int(off[9]) + 200)
    ds = open_dataset(tmp_path / "j")
    tf = TrainTransform(12, normalize="none")
    for workers in (0, 2):
        loader = DeviceLoader(ds, 4, shuffle=False, drop_last=False, workers=workers)
        with pytest.raises(DamagedRecord, match="train record 9 is damaged"):
            list(loader.iterate(transform=tf, generator=torch.Generator()))
    garbage = lambda *a: pytest.fail("decoded a damaged record")  # noqa: E731
    monkeypatch.setattr(loader_mod, "decode_batch_device", garbage)
    loader = DeviceLoader(ds, 4, shuffle=False, drop_last=False, device="cuda")
    monkeypatch.setattr(loader, "_send", lambda t: t)
    with pytest.raises(DamagedRecord, match="train record 9"):  # checked before decoding
        list(loader.iterate(start_batch=2))


def test_one_draw_serves_both_augmentation_paths():
    """A changed draw (here: fixed crops, every image mirrored, a fixed lighting shift)
    reaches the generic path and the fused CPU path alike: they cannot disagree."""

    class Fixed(TrainTransform):
        def draw(self, b, image_size, generator=None, device="cpu"):
            d = super().draw(b, image_size, generator, device)
            shift = torch.full((b, 3), 0.01, device=device)
            return Draws(flip=torch.ones_like(d.flip), oy=d.oy * 0 + 1, ox=d.ox * 0, shift=shift)

    x = torch.randint(0, 256, (6, 3, 10, 12), generator=torch.Generator().manual_seed(0),
                      dtype=torch.uint8)  # fmt: skip
    tf = Fixed(8, normalize="none")
    fast = tf(x, torch.Generator().manual_seed(1))
    tf.fuses = lambda image_size, device: False
    slow = tf(x, torch.Generator().manual_seed(1))
    want = (x[:, :, 1:9, 0:8].flip(-1).double() / 255 + 0.01).float()
    assert torch.allclose(fast, want, atol=1e-6) and torch.allclose(slow, want, atol=1e-6)

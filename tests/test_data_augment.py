"""Device augmentation: crops and flips, 10-crop positions (vs torchvision), fancy PCA noise
covariance (paper §4.1), normalization consistent with the crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from alexnet.data.augment import IMAGENET_EIGVAL, IMAGENET_EIGVEC, EvalTransform, TrainTransform


def _images(b=6, h=10, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)


def test_paper_crops_are_crops_or_flipped_crops():
    x = _images(32)
    tf = TrainTransform(6, lighting_std=0, normalize="none")
    out = tf(x, torch.Generator().manual_seed(1))
    assert out.shape == (32, 3, 6, 6) and out.dtype == torch.float32
    ref = x.float() / 255
    flips, tops = [], set()
    for b in range(32):
        found = []
        for t in range(5):
            for l in range(7):
                crop = ref[b, :, t : t + 6, l : l + 6]
                for f in (False, True):
                    if torch.allclose(out[b], crop.flip(-1) if f else crop, atol=1e-6):
                        found.append((t, l, f))
        assert len(found) == 1, b
        tops.add(found[0][0])
        flips.append(found[0][2])
    assert 0 < sum(flips) < 32 and len(tops) > 2  # both flips, various positions


def test_pad_and_determinism():
    x = torch.full((16, 3, 8, 8), 255, dtype=torch.uint8)
    tf = TrainTransform(8, pad=2, lighting_std=0, normalize="none", flip=False)
    a = tf(x, torch.Generator().manual_seed(7))
    b = tf(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    zeros = (a == 0).flatten(1).sum(1)
    assert (zeros > 0).any() and (zeros == 0).any()  # shifted crops show the zero padding
    assert set(a.unique().tolist()) <= {0.0, 1.0}


def test_fancy_pca_noise_covariance():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    lam = np.array([0.3, 0.05, 0.01])
    n = 40000
    x = torch.full((n, 3, 2, 2), 100, dtype=torch.uint8)
    tf = TrainTransform(2, lighting_std=0.1, eigval=lam, eigvec=q, normalize="none")
    out = tf(x, torch.Generator().manual_seed(0)).double()
    noise = out - 100 / 255
    assert torch.allclose(noise, noise[:, :, :1, :1].expand_as(noise), atol=1e-6)  # same per pixel
    d = noise[:, :, 0, 0].numpy()
    expected = sum((0.1 * lam[i]) ** 2 * np.outer(q[:, i], q[:, i]) for i in range(3))
    emp = np.cov(d.T, bias=True)
    assert np.linalg.norm(emp - expected) / np.linalg.norm(expected) < 0.03
    # the smallest direction is right too (relative to its own size)
    v = q[:, 2]
    assert abs(v @ emp @ v / (0.1 * lam[2]) ** 2 - 1) < 0.05
    assert np.abs(d.mean(0)).max() < 4 * np.sqrt(expected.diagonal().max() / n)
    tf0 = TrainTransform(2, lighting_std=0, normalize="none")
    assert torch.allclose(tf0(x[:4], torch.Generator()), torch.full((4, 3, 2, 2), 100 / 255))


def test_imagenet_constants_are_eigenpairs():
    v = np.array(IMAGENET_EIGVEC)
    assert np.allclose(v.T @ v, np.eye(3), atol=2e-3)  # columns orthonormal
    assert list(IMAGENET_EIGVAL) == sorted(IMAGENET_EIGVAL, reverse=True)


@pytest.mark.parametrize("crops", [1, 10])
def test_eval_crops_match_torchvision(crops):
    x = _images(3, 9, 11)
    out = EvalTransform(5, crops=crops, normalize="none")(x)
    assert out.shape == (3 * crops, 3, 5, 5)
    ref = x.float() / 255
    for b in range(3):
        want = TF.ten_crop(ref[b], 5) if crops == 10 else [TF.center_crop(ref[b], 5)]
        got = out.view(3, crops, 3, 5, 5)[b]
        for k in range(crops):
            assert torch.equal(got[k], want[k]), (b, k)


def test_mean_image_is_cropped_like_the_image():
    x = _images(1, 10, 12).expand(24, -1, -1, -1).contiguous()  # 24 copies of one image
    mean_image = x[0].permute(1, 2, 0).numpy() / 255.0
    tf = TrainTransform(6, lighting_std=0, mean_image=mean_image)
    out = tf(x, torch.Generator().manual_seed(2))
    assert out.abs().max() < 1e-4  # same crop + flip applied to the mean image
    ev = EvalTransform(6, crops=10, mean_image=mean_image)
    assert ev(x[:2]).abs().max() < 1e-4
    # and against a different image, the output is (x - mean) * 255 on the raw pixel scale
    y = torch.full((1, 3, 10, 12), 200, dtype=torch.uint8)
    got = EvalTransform(6, mean_image=mean_image)(y)
    want = 200 - x[:1, :, 2:8, 3:9].double()
    assert torch.allclose(got.double(), want, atol=1e-3)


def test_channel_normalize_resize_and_gray():
    x = _images(4, 8, 8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    ev = EvalTransform(8, normalize="channel", mean=mean, std=std)
    want = (x.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1).double()) / torch.tensor(
        std
    ).view(1, 3, 1, 1).double()
    assert torch.allclose(ev(x).double(), want, atol=1e-5)
    big = EvalTransform(16, resize=16, normalize="none", out_channels=1)(x)
    ref = F.interpolate(x.float() / 255, size=(16, 16), mode="bilinear", antialias=True)
    assert big.shape == (4, 1, 16, 16)
    assert torch.allclose(big, ref.mean(1, keepdim=True), atol=1e-6)


def test_random_resized_crop():
    x = _images(64, 20, 20)
    tf = TrainTransform(8, mode="random_resized_crop", lighting_std=0, normalize="none")
    a = tf(x, torch.Generator().manual_seed(3))
    assert a.shape == (64, 3, 8, 8)
    assert torch.equal(a, tf(x, torch.Generator().manual_seed(3)))
    assert a.min() >= 0 and a.max() <= 1
    # whole-image boxes: the crop is the image resized (antialiased), maybe flipped
    full = TrainTransform(10, mode="random_resized_crop", scale=(1, 1), ratio=(1, 1),
                          lighting_std=0, normalize="none")  # fmt: skip
    ramp = torch.linspace(0, 255, 20).round().to(torch.uint8)  # smooth: box ~ bilinear
    x2 = ramp.view(1, 1, 1, 20).expand(32, 3, 20, 20).contiguous()
    out = full(x2, torch.Generator().manual_seed(4))
    ref = F.avg_pool2d(x2.float() / 255, 2)
    flipped = [torch.allclose(o, r.flip(-1), atol=2e-3) for o, r in zip(out, ref, strict=True)]
    plain = [torch.allclose(o, r, atol=2e-3) for o, r in zip(out, ref, strict=True)]
    assert all(p or f for p, f in zip(plain, flipped, strict=True))
    assert any(flipped) and any(plain)


@pytest.mark.parametrize("normalize", ["mean_image", "channel", "none"])
def test_cpu_fast_path_equals_generic_path(normalize):
    x = _images(20, 12, 14).permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # loader layout
    mean_image = np.random.default_rng(1).random((12, 14, 3))
    tf = TrainTransform(7, normalize=normalize, mean_image=mean_image, mean=(0.3, 0.4, 0.5),
                        std=(0.2, 0.25, 0.3))  # fmt: skip
    assert tf.fuses(tuple(x.shape[-2:]), x.device)
    fast = tf(x, torch.Generator().manual_seed(9))
    tf.fuses = lambda image_size, device: False
    slow = tf(x, torch.Generator().manual_seed(9))
    assert fast.shape == slow.shape == (20, 3, 7, 7)
    assert torch.allclose(fast, slow, atol=1e-4 if normalize == "mean_image" else 1e-6)


def _reference_paper(x, tf, seed, eigval, eigvec, mean_image, dtype):
    """The paper's augmentation written out plainly, one image at a time, drawing from the
    generator in the documented order: crop tops, lefts, flips (u < 0.5), lighting alpha."""
    b, _, h, w = x.shape
    c = tf.crop_size
    g = torch.Generator().manual_seed(seed)
    oy = torch.randint(0, h - c + 1, (b,), generator=g)
    ox = torch.randint(0, w - c + 1, (b,), generator=g)
    flips = torch.rand(b, generator=g) < 0.5
    alpha = torch.randn(b, 3, generator=g) * tf.lighting_std
    rgb = (alpha * torch.tensor(eigval, dtype=torch.float32)) @ torch.tensor(
        eigvec, dtype=torch.float32
    ).T  # (B, 3): sum_i alpha_i lambda_i p_i
    m255 = torch.tensor(mean_image, dtype=torch.float32).permute(2, 0, 1) * 255.0
    out = []
    for i in range(b):
        t, l = int(oy[i]), int(ox[i])
        img = x[i, :, t : t + c, l : l + c].to(dtype)
        mean = m255[:, t : t + c, l : l + c].to(dtype)
        if flips[i]:
            img, mean = img.flip(-1), mean.flip(-1)
        out.append(img - mean + (rgb[i].to(dtype) * 255.0)[:, None, None])
    return torch.stack(out)


def test_cpu_fast_path_equals_plain_reference():
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.integers(0, 256, (24, 11, 13, 3), dtype=np.uint8)).permute(0, 3, 1, 2)
    mean_image = rng.random((11, 13, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    lam = np.array([0.4, 0.1, 0.02])
    tf = TrainTransform(6, eigval=lam, eigvec=q, mean_image=mean_image)
    assert tf.fuses(tuple(x.shape[-2:]), x.device)
    got = tf(x, torch.Generator().manual_seed(11))
    assert got.shape == (24, 3, 6, 6) and got.dtype == torch.float32
    # float32, same operation order (x - mean*255) + 255*shift: bit for bit
    want = _reference_paper(x, tf, 11, lam, q, mean_image, torch.float32)
    assert torch.equal(got, want)
    # and the exact value (float64) to float32 rounding
    want64 = _reference_paper(x, tf, 11, lam, q, mean_image, torch.float64)
    assert torch.allclose(got.double(), want64, atol=1e-4)
    # a non-contiguous (plain NCHW) input gives the same result
    assert torch.equal(tf(x.contiguous(), torch.Generator().manual_seed(11)), want)


def test_output_buffers_are_reused_only_when_released():
    x = _images(16, 10, 12)
    tf = TrainTransform(6, lighting_std=0, normalize="none")
    a = tf(x, torch.Generator().manual_seed(1))
    a_copy = a.clone()
    b = tf(x, torch.Generator().manual_seed(2))  # a is alive: must not be overwritten
    assert torch.equal(a, a_copy) and a.data_ptr() != b.data_ptr()
    ptr = b.data_ptr()
    del b
    c = tf(x, torch.Generator().manual_seed(2))
    assert c.data_ptr() == ptr  # b's memory, now free, is reused
    view = c[:3]
    view_copy = view.clone()
    del c
    d = tf(x, torch.Generator().manual_seed(3))
    assert d.data_ptr() != ptr  # a view keeps the buffer in use
    assert torch.equal(a, a_copy) and torch.equal(view, view_copy)

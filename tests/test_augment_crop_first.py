"""The GPU input pipeline's augmentation (paper §4.1), checked on the CPU: crops cut from the
uint8 images before conversion give the same float32 batch, bit for bit, as converting the whole
images first (today's path, which resizing still needs); a batch made in the model's dtype and
layout (`produce`) is exactly the first layer's own conversion of the float32 batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alexnet.data.augment import TrainTransform


def _transform(**kw) -> TrainTransform:
    rng = np.random.default_rng(0)
    size = kw.pop("size", 36)
    return TrainTransform(
        crop_size=32,
        mean_image=rng.random((size, size, 3)),
        eigval=np.array([0.2, 0.02, 0.004], np.float32),
        eigvec=np.linalg.qr(rng.standard_normal((3, 3)))[0].astype(np.float32),
        mean=np.array([0.4, 0.5, 0.6], np.float32),
        std=np.array([0.2, 0.25, 0.3], np.float32),
        **kw,
    )


CASES = [
    {"pad": 0, "normalize": "mean_image"},
    {"pad": 4, "normalize": "mean_image"},
    {"pad": 4, "normalize": "channel", "lighting_std": 0.0},
    {"pad": 2, "normalize": "none", "flip": False},
]


@pytest.mark.parametrize("kw", CASES)
def test_crop_first_equals_converting_the_whole_image_first(kw):
    t = _transform(**kw)
    images = torch.randint(0, 256, (8, 3, 36, 36), dtype=torch.uint8)
    # the NCHW-contiguous tensor keeps the CPU off its fused NHWC path, as on CUDA
    a = t._augment(images, torch.Generator().manual_seed(5), crop_first=True)
    b = t._augment(images, torch.Generator().manual_seed(5), crop_first=False)
    assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape == (8, 3, 32, 32)
    assert torch.equal(a, b)


def test_the_call_takes_the_crop_first_path_and_produces_the_models_input():
    t = _transform(pad=4)
    images = torch.randint(0, 256, (6, 3, 36, 36), dtype=torch.uint8)
    fp32 = t(images, torch.Generator().manual_seed(1))
    assert torch.equal(fp32, t._augment(images, torch.Generator().manual_seed(1), crop_first=False))
    t.produce(torch.bfloat16, channels_last=True)
    made = t(images, torch.Generator().manual_seed(1))
    assert made.dtype == torch.bfloat16 and made.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(made, fp32.to(torch.bfloat16))  # what autocast gives conv1
    t.produce(None, channels_last=False)
    assert torch.equal(t(images, torch.Generator().manual_seed(1)), fp32)


def test_a_resize_still_converts_the_whole_image_first():
    t = _transform(resize=40, size=40)
    images = torch.randint(0, 256, (4, 3, 30, 30), dtype=torch.uint8)
    got = t(images, torch.Generator().manual_seed(2))
    assert torch.equal(got, t._augment(images, torch.Generator().manual_seed(2), crop_first=False))

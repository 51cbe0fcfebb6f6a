"""Augmentation on the device, in whole batches (paper §4.1; evaluation §4.1 / §6): uint8
(B, 3, H, W) -> float32 crops. TrainTransform: random crop + flip (paper) or torchvision's
RandomResizedCrop, fancy-PCA lighting, normalization; EvalTransform: the centre or the paper's
10 crops. All randomness comes from the caller's torch.Generator, on the images' device."""

from __future__ import annotations

import functools
import math
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import KW_ONLY, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from alexnet.data import AUGMENT_MODES, NORMALIZE_MODES

# PCA of ImageNet's RGB pixels in [0, 1] (paper §4.1): eigenvalues, largest first, and the
# rows of the matrix whose COLUMNS are the eigenvectors
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Draws:
    """One batch's random draws (`TrainTransform.draw`): flip (B,) bool; paper crops: tops oy,
    lefts ox (B,) int64; resized crops: boxes (B, 4) (left, top, right, bottom); shift (B, 3),
    each image's fancy-PCA lighting sum_i alpha_i lambda_i p_i (None when off)."""

    flip: torch.Tensor
    oy: torch.Tensor | None = None
    ox: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    shift: torch.Tensor | None = None


@functools.cache
def thread_pool(n: int) -> ThreadPoolExecutor:
    """One long-lived pool of `n` threads per size (the augmentation splits batches over it)."""
    return ThreadPoolExecutor(n, thread_name_prefix="alexnet-augment")


class ReusableBuffers:
    """Recycles large numpy arrays (a fresh 38 MB batch costs ~6 ms of page faults): one is
    handed out again only when its reference count shows nothing made from it is alive (so
    an earlier batch is never overwritten). At most `keep` buffers per shape."""

    def __init__(self, dtype: Any = np.float32, keep: int = 4) -> None:
        self.dtype = np.dtype(dtype)
        self.keep = keep
        self._free: dict[tuple[int, ...], list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def get(self, shape: tuple[int, ...]) -> np.ndarray:
        with self._lock:
            held = self._free.setdefault(tuple(shape), [])
            for a in held:
                # references: the list, the loop variable, getrefcount's argument
                if sys.getrefcount(a) <= 3:
                    return a
            a = np.empty(shape, self.dtype)
            if len(held) < self.keep:
                held.append(a)
            return a


@dataclass(eq=False, repr=False)
class _Common:
    crop_size: int = 224
    _: KW_ONLY
    resize: int | None = None  # scale images to resize x resize first (small datasets)
    normalize: str = "mean_image"  # NORMALIZE_MODES
    mean_image: Any = None  # (H, W, 3) in [0, 1], for "mean_image" (paper §2)
    mean: Any = None  # (3,), for "channel" (None: IMAGENET_MEAN)
    std: Any = None  # (3,) (None: IMAGENET_STD)
    out_channels: int = 3  # 1: RGB averaged, for one-channel models

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize={self.normalize!r}: choose from {NORMALIZE_MODES}")
        if self.normalize == "mean_image" and self.mean_image is None:
            raise ValueError("normalize='mean_image' needs mean_image (H, W, 3) in [0, 1]")
        if self.out_channels not in (1, 3):
            raise ValueError(f"out_channels={self.out_channels}: must be 1 or 3")
        self.crop_size = int(self.crop_size)
        self.mean = IMAGENET_MEAN if self.mean is None else self.mean
        self.std = IMAGENET_STD if self.std is None else self.std
        self._cache: dict[tuple, torch.Tensor] = {}
        self._buffers = ReusableBuffers(np.float32, keep=8)

    def _const(self, name: str, device: torch.device) -> torch.Tensor:
        """Attribute `name` as float32 on `device`, made once; "mean_image": (3, H', W') after
        the resize; "mean255_hwc" (and "_flipped"): it as (H', W', 3) in 0..255 (mirrored)."""
        key = (name, str(device))
        if key not in self._cache:
            if name.startswith("mean255_hwc"):
                t = self._const("mean_image", device).permute(1, 2, 0) * 255.0
                t = t.flip(1) if name.endswith("flipped") else t
            else:
                t = torch.as_tensor(np.asarray(getattr(self, name), np.float32), device=device)
                if name == "mean_image":
                    t = self._resize(t.permute(2, 0, 1)[None])[0]
            self._cache[key] = t.contiguous()
        return self._cache[key]

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize is None or tuple(x.shape[-2:]) == (self.resize, self.resize):
            return x
        size = (int(self.resize), int(self.resize))
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images (B, 3, H, W), got {tuple(images.shape)}")
        return images

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        return self._resize(self._check(images).float().div_(255.0))

    def _crop(self, x, m, oy, ox, flip, bi=None):
        """Crops (n, 3, c, c) at tops oy and lefts ox (n,), mirrored where `flip`, of images
        x[bi] (x (B, 3, H, W); bi: by default crop i of image i) and of the mean image m
        (3, H, W)."""
        c = self.crop_size
        ar = torch.arange(c, device=x.device)
        rows = (oy[:, None] + ar)[:, :, None]  # (n, c, 1)
        cols = (ox[:, None] + torch.where(flip[:, None], c - 1 - ar, ar))[:, None, :]
        bi = torch.arange(len(oy), device=x.device) if bi is None else bi
        x = x[bi[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # (n, c, c, 3) -> NCHW
        if m is not None:
            m = m[:, rows, cols].permute(1, 0, 2, 3)
        return x, m

    def _finish(self, x: torch.Tensor, mean_crops: torch.Tensor | None) -> torch.Tensor:
        if self.normalize == "mean_image":
            x = (x - mean_crops) * 255.0
        elif self.normalize == "channel":
            mean, std = self._const("mean", x.device), self._const("std", x.device)
            x = (x - mean[:, None, None]) / std[:, None, None]
        if self.out_channels == 1:
            x = x.mean(dim=1, keepdim=True)
        return x.contiguous()


@dataclass(eq=False, repr=False, kw_only=True)
class TrainTransform(_Common):
    """Random crop + flip (paper) or RandomResizedCrop, fancy PCA, normalization."""

    mode: str = "paper"  # AUGMENT_MODES
    pad: int = 0  # zero padding before the paper's crop
    flip: bool = True
    lighting_std: float = 0.1  # fancy PCA's alpha ~ N(0, lighting_std) (paper §4.1)
    eigval: Any = IMAGENET_EIGVAL  # (3,) RGB eigenvalues, largest first
    eigvec: Any = IMAGENET_EIGVEC  # (3, 3) eigenvectors as columns
    scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop's area range
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # and its aspect ratios

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in AUGMENT_MODES:
            raise ValueError(f"mode={self.mode!r}: choose from {AUGMENT_MODES}")
        self.pad, self.lighting_std = int(self.pad), float(self.lighting_std)
        self.out_dtype: torch.dtype | None = None  # `produce`: the model's dtype and format
        self.out_channels_last = False

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """images uint8 (B, 3, H, W) -> float32 (B, out_channels, crop, crop), or the dtype and
        memory format set by `produce`."""
        if images.dtype == torch.uint8 and self.fuses(tuple(images.shape[-2:]), images.device):
            b, _, h, w = self._check(images).shape  # the CPU fast path: same draws, same result
            xh = images.permute(0, 2, 3, 1).numpy()  # (B, H, W, 3) view of the loader's bytes
            threads = max(1, min(torch.get_num_threads(), b // 8))
            return self.apply_rows(xh, range(b), self.draw(b, (h, w), generator), threads)
        unresized = self.resize is None or tuple(images.shape[-2:]) == (self.resize,) * 2
        x = self._augment(images, generator, crop_first=self.mode == "paper" and unresized)
        if self.out_dtype is not None or self.out_channels_last:
            fmt = torch.channels_last if self.out_channels_last else torch.contiguous_format
            x = x.to(dtype=self.out_dtype or x.dtype, memory_format=fmt)
        return x

    def produce(self, dtype: torch.dtype | None = None, channels_last: bool = False) -> None:
        """Hand batches over in the model's dtype and memory format (bf16 channels-last under
        --amp): the conversion its first layer would make, made once here."""
        self.out_dtype, self.out_channels_last = dtype, bool(channels_last)

    def _augment(self, images: torch.Tensor, generator, crop_first: bool) -> torch.Tensor:
        """The batch path. `crop_first` (paper crops, no resize): cut the crops from the uint8
        images and convert only those, the same values as converting the whole images first."""
        x = self._check(images) if crop_first else self._input(images)
        dev, b = x.device, x.shape[0]
        m = self._const("mean_image", dev) if self.normalize == "mean_image" else None
        if self.mode == "paper" and self.pad:
            x = F.pad(x, (self.pad,) * 4)
            m = F.pad(m, (self.pad,) * 4) if m is not None else None
        d = self.draw(b, tuple(x.shape[-2:]), generator, dev)
        if self.mode == "paper":
            x, m = self._crop(x, m, d.oy, d.ox, d.flip)
        else:
            x, m = self._resized_crop(x, m, d)
        if crop_first:
            x = x.float().div_(255.0)
        if d.shift is not None:
            x = x + d.shift[:, :, None, None]
        return self._finish(x, m)

    def fuses(self, image_size: tuple[int, int], device: str | torch.device) -> bool:
        """True when images of `image_size` on `device` take the CPU fast path (`apply_rows`:
        paper crops straight from uint8 NHWC memory), which DeviceLoader runs in its threads."""
        no_resize = self.resize is None or tuple(image_size) == (self.resize,) * 2
        cpu = torch.device(device).type == "cpu"
        return self.mode == "paper" and cpu and no_resize and self.pad == 0

    def draw(
        self,
        b: int,
        image_size: tuple[int, int],
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
    ) -> Draws:
        """All random draws of a batch of `b` images of `image_size` (after resize and padding)
        for both paths, in this order: crop boxes, flips, lighting (paper §4.1)."""
        h, w = image_size
        dev, c = torch.device(device), self.crop_size
        oy = ox = boxes = None
        if self.mode == "paper":
            if h < c or w < c:
                raise ValueError(f"crop {c} larger than the (padded) image {h}x{w}")
            oy = torch.randint(0, h - c + 1, (b,), generator=generator, device=dev)
            ox = torch.randint(0, w - c + 1, (b,), generator=generator, device=dev)
        else:
            boxes = self._resized_crop_boxes(b, h, w, generator, dev)
        flip = torch.rand(b, generator=generator, device=dev) < 0.5  # drawn even when off
        flip = flip if self.flip else torch.zeros_like(flip)
        shift = None
        if self.lighting_std > 0:  # sum_i alpha_i lambda_i p_i, alpha_i ~ N(0, lighting_std)
            alpha = torch.randn(b, 3, generator=generator, device=dev) * self.lighting_std
            shift = (alpha * self._const("eigval", dev)) @ self._const("eigvec", dev).T
        return Draws(flip=flip, oy=oy, ox=ox, boxes=boxes, shift=shift)

    def apply_rows(self, rows: np.ndarray, idx: Sequence[int], draws: Draws, threads: int = 1):
        """Augment images rows[idx[i]] (rows: (N, H, W, 3) uint8, e.g. the packed memory map)
        with paper-mode `draws` -> float32 (B, out_channels, crop, crop), channels_last."""
        oy, ox, flip = draws.oy.tolist(), draws.ox.tolist(), draws.flip.tolist()
        b, c, (h, w) = len(oy), self.crop_size, rows.shape[1:3]
        shift = np.zeros((b, 3), np.float32)
        if draws.shift is not None:
            shift = draws.shift.numpy().astype(np.float32)
        m = mf = scale = None  # mean rows (and mirrored), per-channel scale, offsets (B, 3)
        if self.normalize == "mean_image":  # work in the raw 0..255 scale (paper §2)
            offset = shift * np.float32(255.0)
            m = self._const("mean255_hwc", torch.device("cpu")).numpy().reshape(h, w * 3)
            mf = self._const("mean255_hwc_flipped", torch.device("cpu")).numpy().reshape(h, w * 3)
        elif self.normalize == "channel":
            mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
            scale, offset = 1.0 / (255.0 * std), (shift - mean) / std
        else:
            scale, offset = np.full(3, 1.0 / 255.0, np.float32), shift
        # Per image in (c, c*3) views, so every inner loop is a whole row (the per-channel
        # constants tiled along it); numpy releases the GIL, so images split over threads.
        offset = np.tile(offset.astype(np.float32), (1, c))  # (B, c*3)
        scale = None if scale is None else np.tile(scale.astype(np.float32), c)
        buf = self._buffers.get((b, c, c, 3))
        out = buf.reshape(b, c, c * 3)

        def work(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                t, l, o, x = oy[i], ox[i], out[i], rows[idx[i]]
                if x.strides != (3 * w, 3, 1):
                    x = np.ascontiguousarray(x)
                if flip[i]:  # mirrored: one strided uint8 -> float32 copy per channel
                    crop = x[t : t + c, l : l + c][:, ::-1]
                    o3 = o.reshape(c, c, 3)
                    for ch in range(3):
                        np.copyto(o3[:, :, ch], crop[:, :, ch], casting="unsafe")
                    mv = mf[t : t + c, 3 * (w - l - c) : 3 * (w - l)] if mf is not None else None
                else:
                    crop = x[t : t + c, l : l + c].reshape(c, c * 3)
                    np.copyto(o, crop, casting="unsafe")  # exact: uint8 -> float32
                    mv = m[t : t + c, 3 * l : 3 * (l + c)] if m is not None else None
                if mv is not None:
                    np.subtract(o, mv, out=o)
                if scale is not None:
                    np.multiply(o, scale, out=o)
                np.add(o, offset[i], out=o)

        if threads <= 1:
            work(0, b)
        else:
            bounds = [b * k // threads for k in range(threads + 1)]
            list(thread_pool(threads).map(work, bounds[:-1], bounds[1:]))
        x = torch.from_numpy(buf).permute(0, 3, 1, 2)  # (B, 3, c, c), channels_last memory
        return x.mean(dim=1, keepdim=True) if self.out_channels == 1 else x

    def _resized_crop_boxes(self, b: int, h: int, w: int, generator, dev) -> torch.Tensor:
        """torchvision's RandomResizedCrop box recipe (10 tries, then a centre fallback):
        boxes (B, 4) float32 as (left, top, right, bottom)."""
        tries = 10
        area = h * w * torch.empty(b, tries, device=dev).uniform_(*self.scale, generator=generator)
        lr = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        ar = torch.exp(torch.empty(b, tries, device=dev).uniform_(*lr, generator=generator))
        cw = torch.round(torch.sqrt(area * ar))
        ch = torch.round(torch.sqrt(area / ar))
        ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
        first = torch.argmax(ok.int(), dim=1)
        any_ok = ok.any(dim=1)
        cw = cw.gather(1, first[:, None])[:, 0]
        ch = ch.gather(1, first[:, None])[:, 0]
        in_ratio = w / h
        if in_ratio < min(self.ratio):
            fw, fh = w, round(w / min(self.ratio))
        elif in_ratio > max(self.ratio):
            fw, fh = round(h * max(self.ratio)), h
        else:
            fw, fh = w, h
        cw = torch.where(any_ok, cw, torch.full_like(cw, fw))
        ch = torch.where(any_ok, ch, torch.full_like(ch, fh))
        u = torch.rand(b, 2, generator=generator, device=dev)
        top = torch.where(any_ok, torch.floor(u[:, 0] * (h - ch + 1)), (h - ch) // 2)
        left = torch.where(any_ok, torch.floor(u[:, 1] * (w - cw + 1)), (w - cw) // 2)
        return torch.stack([left, top, left + cw, top + ch], dim=1).float()

    def _resized_crop(self, x, m, d: Draws):
        """The boxes of `d` resampled to crop x crop with roi_align (bilinear, averaging when
        shrinking), then mirrored where `d.flip`."""
        dev, b, c = x.device, x.shape[0], self.crop_size
        idx = torch.arange(b, device=dev, dtype=torch.float32)[:, None]
        x = roi_align(x, torch.cat([idx, d.boxes], 1), c, 1.0, -1, aligned=True)
        x = torch.where(d.flip[:, None, None, None], x.flip(-1), x)
        if m is not None:
            boxes = torch.cat([torch.zeros_like(idx), d.boxes], 1)
            m = roi_align(m[None], boxes, c, 1.0, -1, True)
            m = torch.where(d.flip[:, None, None, None], m.flip(-1), m)
        return x, m


@dataclass(eq=False, repr=False, kw_only=True)
class EvalTransform(_Common):
    """Centre crop (crops=1) or the paper's 10 crops (torchvision's `ten_crop` order: tl, tr,
    bl, br, centre, then those of the mirrored image), image-major."""

    crops: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.crops not in (1, 10):
            raise ValueError(f"crops={self.crops}: must be 1 or 10")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """images uint8 (B, 3, H, W) -> float32 (B*crops, out_channels, crop, crop)."""
        x = self._input(images)
        (b, _, h, w), c = x.shape, self.crop_size
        if h < c or w < c:
            raise ValueError(f"crop {c} larger than the image {h}x{w}")
        centre = (round((h - c) / 2.0), round((w - c) / 2.0))
        at = [(*centre, 0)]  # (top, left, mirrored) of each crop
        if self.crops == 10:  # a mirrored crop's left is that of the mirrored image's crop
            five = [(0, 0), (0, w - c), (h - c, 0), (h - c, w - c), centre]
            at = [(t, l, 0) for t, l in five] + [(t, w - c - l, 1) for t, l in five]
        pos = torch.tensor(at, device=x.device).repeat(b, 1)  # (B*crops, 3), image-major
        bi = torch.arange(b, device=x.device).repeat_interleave(self.crops)
        m = self._const("mean_image", x.device) if self.normalize == "mean_image" else None
        x, m = self._crop(x, m, pos[:, 0], pos[:, 1], pos[:, 2].bool(), bi)
        return self._finish(x, m)

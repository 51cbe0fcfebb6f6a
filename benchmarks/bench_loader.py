"""Loader benchmark: images/s delivered to the model, on real-sized JPEGs.

(a) torchvision ImageFolder + PIL with the paper's transforms (Resize 256, CenterCrop 256,
    RandomCrop 224, flip, ToTensor, Normalize), decoding every JPEG every epoch;
(b) the same with torchvision's RandomResizedCrop(224) recipe (pytorch/examples);
(c) this project: `prepare` once, then DeviceLoader + TrainTransform on the device (paper crop,
    flip, fancy PCA, mean-image subtraction; float32 (B, 3, 224, 224) out), same number of
    workers. On a CPU device the augmentation runs in the loader's worker threads
    (`loader.iterate(transform=..., generator=...)`); also reported: the transform applied by
    the consumer to the loader's uint8 batches, and the loader alone.
The JPEGs (500x375 or 375x500, quality 90) are cut from real photos: scikit-image's sample
images when found (or --photos DIR), matplotlib's grace_hopper.jpg, else a synthetic texture.
The pipelines run in alternating rounds (--rounds, default 2), each keeping its best round
(other jobs share the machine); rates exclude the first batch of each measurement.
Last line: one JSON object with packed_vs_imagefolder = c / a.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def find_photos(extra: str | None) -> list[Image.Image]:
    dirs = [Path(extra)] if extra else []
    for mod, sub in (("skimage", "data"), ("matplotlib", "mpl-data/sample_data")):
        spec = importlib.util.find_spec(mod)
        if spec and spec.origin:
            dirs.append(Path(spec.origin).parent / sub)
    photos = []
    for d in dirs:
        for p in sorted(d.glob("*")) if d.is_dir() else []:
            if p.suffix.lower() not in (".png", ".jpg", ".jpeg"):
                continue
            try:
                img = Image.open(p)
                if min(img.size) >= 256 and img.mode in ("RGB", "RGBA"):
                    photos.append(img.convert("RGB"))
            except OSError:
                continue
    if not photos:  # no real photo available: a smooth random texture
        rng = np.random.default_rng(0)
        small = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        photos = [Image.fromarray(small).resize((640, 480), Image.BICUBIC)]
    return photos


def make_jpegs(root: Path, photos: list[Image.Image], n: int, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("val", classes)):
        for k in range(count):
            img = photos[k % len(photos)]
            w, h = img.size
            portrait = k % 4 == 3
            aspect = 3 / 4 if portrait else 4 / 3
            cw = int(min(w, h * aspect) * rng.uniform(0.6, 1.0))
            ch = int(cw / aspect)
            x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
            out = img.crop((x0, y0, x0 + cw, y0 + ch)).resize(
                (375, 500) if portrait else (500, 375), Image.BICUBIC
            )
            if rng.random() < 0.5:
                out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            d = root / split / f"class{k % classes}"
            d.mkdir(parents=True, exist_ok=True)
            out.save(d / f"img_{k:05d}.JPEG", quality=90)


def rate(batches, epochs: int = 1) -> float:
    """Images per second after the first batch (worker start-up excluded)."""
    n, t0 = 0, None
    for _ in range(epochs):
        for x, _y in batches():
            if t0 is None:
                t0 = time.perf_counter()
                continue
            n += len(x)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=768)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; best kept")
    ap.add_argument("--photos", default=None, help="directory of real photos to cut JPEGs from")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    import torchvision.datasets as tvd
    import torchvision.transforms as T

    from alexnet.data.augment import IMAGENET_MEAN, IMAGENET_STD, TrainTransform
    from alexnet.data.loader import DeviceLoader
    from alexnet.data.pack import prepare
    from alexnet.data.packed import open_dataset
    from alexnet.data.sources import open_source

    W, B = args.workers, args.batch_size
    tmp = Path(tempfile.mkdtemp(prefix="bench_loader_"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # full-size files: leave no trace
    photos = find_photos(args.photos)
    make_jpegs(tmp / "jpegs", photos, args.images)
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    recipes = {
        "imagefolder_paper": T.Compose([T.Resize(256), T.CenterCrop(256), T.RandomCrop(224),
                                        T.RandomHorizontalFlip(), T.ToTensor(), norm]),
        "imagefolder_rrc": T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(),
                                      T.ToTensor(), norm]),
    }  # fmt: skip
    results: dict[str, float] = {}
    loaders = {}
    for name, tf in recipes.items():
        ds = tvd.ImageFolder(str(tmp / "jpegs" / "train"), transform=tf)
        loaders[name] = torch.utils.data.DataLoader(
            ds, B, shuffle=True, num_workers=W, drop_last=True
        )

    def best(name: str, value: float) -> None:  # best of the rounds: load spikes only slow
        results[name] = max(results.get(name, 0.0), value)

    t0 = time.perf_counter()
    prepare(open_source(str(tmp / "jpegs"), "imagefolder", size=256), tmp / "packed",
            workers=W, progress=False)  # fmt: skip
    results["prepare_once"] = (args.images + 10) / (time.perf_counter() - t0)
    ds = open_dataset(tmp / "packed")
    st = ds.stats
    loader = DeviceLoader(ds, B, shuffle=True, drop_last=True, workers=W, device=args.device)
    aug = TrainTransform(224, eigval=st.eigval, eigvec=st.eigvec, mean_image=st.mean_image)
    gen = torch.Generator(device=args.device).manual_seed(0)
    epoch = iter(range(1000))

    def sync(batches):
        for x, y in batches:
            if x.is_cuda:
                torch.cuda.synchronize()
            yield x, y

    def packed_batches():  # augmented batches, ready for the model (float32 (B, 3, 224, 224))
        loader.set_epoch(next(epoch))
        return sync(loader.iterate(transform=aug, generator=gen))

    def packed_then_augment():  # the same, with the transform applied by the consumer
        loader.set_epoch(next(epoch))
        return sync((aug(x, gen), y) for x, y in loader.iterate())

    def uint8_batches():  # what the loader alone hands to the device (augmentation excluded)
        loader.set_epoch(next(epoch))
        return loader.iterate()

    # Other jobs share the machine: the pipelines are measured in alternating rounds and each
    # keeps its best round (the same treatment for every pipeline).
    for _ in range(args.rounds):
        for name, dl in loaders.items():
            best(name, rate(lambda dl=dl: iter(dl)))
        best("packed", rate(packed_batches, epochs=5))
        best("packed_consumer_aug", rate(packed_then_augment, epochs=5))
        best("packed_uint8", rate(uint8_batches, epochs=5))
    a, b, c = results["imagefolder_paper"], results["imagefolder_rrc"], results["packed"]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, device {args.device}"
    if args.device.startswith("cuda"):
        machine += f" ({torch.cuda.get_device_name()})"
    print(f"machine: {machine}; {args.images} JPEGs 500x375 q90 from {len(photos)} photos; "
          f"batch {B}, {W} workers, best of {args.rounds} rounds")  # fmt: skip
    print(f"{'pipeline':<44}{'images/s':>10}")
    print(f"{'(a) ImageFolder + PIL, paper transforms':<44}{a:>10.0f}")
    print(f"{'(b) ImageFolder + PIL, RandomResizedCrop':<44}{b:>10.0f}")
    print(f"{'(c) packed + DeviceLoader + device augment':<44}{c:>10.0f}")
    print(f"{'    same, augmentation in the consumer':<44}{results['packed_consumer_aug']:>10.0f}")
    print(f"{'    packed loader alone (uint8 batches)':<44}{results['packed_uint8']:>10.0f}")
    print(f"{'    prepare (one-time, per image)':<44}{results['prepare_once']:>10.0f}")
    print(json.dumps({
        "machine": machine, "images": args.images, "workers": W, "batch_size": B,
        "rounds": args.rounds,
        "imagefolder_paper_img_s": round(a, 1), "imagefolder_rrc_img_s": round(b, 1),
        "packed_img_s": round(c, 1),
        "packed_consumer_aug_img_s": round(results["packed_consumer_aug"], 1),
        "packed_uint8_img_s": round(results["packed_uint8"], 1),
        "prepare_img_s": round(results["prepare_once"], 1),
        "packed_vs_imagefolder": round(c / a, 2), "packed_vs_rrc": round(c / b, 2),
        "packed_uint8_vs_imagefolder": round(results["packed_uint8"] / a, 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()

"""From dataset + model + config to the model's options, the crop geometry, the loaders and the
training and evaluation transforms (paper §2, §4.1)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alexnet.data.augment import TrainTransform
from alexnet.data.loader import DeviceLoader
from alexnet.data.packed import DatasetStats
from alexnet.errors import Param, UserError
from alexnet.train.recipes import recipe_model_options
from alexnet.weights.meta import Preprocess


def model_options(cfg, image_size: tuple[int, int], stats: DatasetStats) -> dict[str, Any]:
    """Options for get_model: the recipe's (recipes.recipe_model_options), for `small` the data's
    input size and channels (28 px and 1 channel for Fashion-MNIST); --model-options win."""
    options = recipe_model_options(cfg.recipe, cfg.model)
    if cfg.model == "small":
        options["input_size"] = 28 if min(image_size) <= 28 else 32
        options["in_channels"] = 1 if stats.is_grayscale() else 3
    options.update(cfg.model_options)
    return options


def plan_geometry(
    image_size: tuple[int, int],
    input_size: int,
    *,
    augment: str,
    pad: int | None,
    resize: int | None,
) -> dict[str, int | None]:
    """{"crop_size", "resize", "pad"}: the crop is the model's input size; images a little larger
    (256 -> 224) are cropped directly, as in the paper; images of the crop size (28 -> 28) are
    padded by crop // 8 so random crops still translate; others (28 -> 224, 256 -> 28) are first
    resized on the device to round(crop * 256 / 224), the paper's ratio."""
    side = min(image_size)
    crop = int(input_size)
    if resize is None:
        resize = None if crop <= side < 2 * crop else round(crop * 256 / 224)
    source = resize or side
    if pad is None:
        pad = max(crop // 8, 1) if (augment == "paper" and source == crop) else 0
    return {"crop_size": crop, "resize": resize, "pad": int(pad)}


@dataclass
class Inputs:
    """The data side of a run: datasets, loaders, the training transform, and what was derived
    from the data (crop geometry, the preprocessing stored with the weights, the mean image)."""

    train_ds: Any
    val_ds: Any
    train_loader: DeviceLoader
    val_loader: DeviceLoader
    train_eval_loader: DeviceLoader | None  # --train-eval's first training images, or None
    train_transform: TrainTransform
    geometry: dict[str, Any]
    preprocess: Preprocess
    meta: dict[str, Any]  # what the weights and checkpoints hold: model config, classes, mean


def make_inputs(cfg, train_ds, val_ds, stats: DatasetStats, net, info, device) -> Inputs:
    """The geometry, preprocessing, transforms and loaders of the data for `net`; `stats`: the
    train split's statistics, with a fine-tuned run's normalization."""
    in_channels = int(getattr(net, "in_channels", 3))
    geometry = plan_geometry(
        train_ds.image_size, net.input_size, augment=cfg.augment, pad=cfg.pad, resize=cfg.resize
    )
    preprocess = Preprocess(
        crop_size=geometry["crop_size"],
        image_size=min(train_ds.image_size),  # `predict` brings new photos to this size
        resize=geometry["resize"],
        out_channels=in_channels,
        normalize=cfg.normalize,
        mean=[float(v) for v in np.asarray(stats.channel_mean).reshape(-1)],
        std=[float(v) for v in np.asarray(stats.channel_std).reshape(-1)],
    )
    where = dict(seed=cfg.seed, rank=info.rank, world_size=info.world_size, workers=cfg.workers)
    batches = functools.partial(DeviceLoader, batch_size=cfg.batch_size, device=device, **where)
    train_loader = batches(train_ds, shuffle=True, drop_last=True)
    val_loader = batches(val_ds, shuffle=False, drop_last=False)
    head = train_ds.head(cfg.train_eval)
    train_eval_loader = batches(head, shuffle=False, drop_last=False) if cfg.train_eval else None
    if len(train_loader) == 0:
        raise UserError(
            f"{cfg.data}: {len(train_ds)} training images are fewer than one global batch of "
            f"{cfg.batch_size * info.world_size}; lower ",
            Param("batch_size"),
        )
    transform = TrainTransform(
        crop_size=geometry["crop_size"],
        mode=cfg.augment,
        resize=geometry["resize"],
        pad=geometry["pad"],
        flip=cfg.flip,
        lighting_std=cfg.lighting_std,
        eigval=np.asarray(stats.eigval, dtype=np.float32),
        eigvec=np.asarray(stats.eigvec, dtype=np.float32),
        normalize=cfg.normalize,
        mean_image=np.asarray(stats.mean_image, dtype=np.float32),
        mean=np.asarray(stats.channel_mean, dtype=np.float32),
        std=np.asarray(stats.channel_std, dtype=np.float32),
        out_channels=in_channels,
    )
    if device.type == "cuda":  # batches made in the model's dtype and layout (the CPU: fp32)
        transform.produce(torch.bfloat16 if cfg.amp else None, channels_last=cfg.channels_last)
    mean_image = torch.as_tensor(stats.mean_image, dtype=torch.float32)
    meta = dict(model_config=net.config, classes=list(train_ds.classes), mean_image=mean_image)
    loaders = (train_loader, val_loader, train_eval_loader)
    return Inputs(train_ds, val_ds, *loaders, transform, geometry, preprocess, meta)

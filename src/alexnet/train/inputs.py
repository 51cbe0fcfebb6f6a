"""From dataset + model + config to the model's options and the training and evaluation
transforms (paper §2, §4.1)."""

from __future__ import annotations

from typing import Any

import numpy as np

from alexnet.data.augment import TrainTransform
from alexnet.data.packed import DatasetStats
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


def preprocess_for(
    cfg, geometry: dict, in_channels: int, stats: dict, image_size: int | None = None
) -> Preprocess:
    """The evaluation-time preprocessing stored with the weights; `image_size`: the packed
    images' side, so `predict` brings new photos to the same size."""
    mean = [float(v) for v in np.asarray(stats.channel_mean).reshape(-1)]
    std = [float(v) for v in np.asarray(stats.channel_std).reshape(-1)]
    return Preprocess(
        crop_size=geometry["crop_size"],
        image_size=image_size,
        resize=geometry["resize"],
        out_channels=int(in_channels),
        normalize=cfg.normalize,
        mean=mean,
        std=std,
    )


def make_train_transform(cfg, geometry: dict, in_channels: int, stats: dict) -> TrainTransform:
    return TrainTransform(
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


class FirstImages:
    """A view of the first `n` images of a packed split (--train-limit, --val-limit), with what
    DeviceLoader and the engine read of a split."""

    def __init__(self, ds, n: int) -> None:
        self.images, self.labels = ds.images[:n], ds.labels[:n]
        self.classes, self.num_classes = ds.classes, ds.num_classes
        self.image_size, self.stats, self.fingerprint = ds.image_size, ds.stats, ds.fingerprint

    def __len__(self) -> int:
        return int(self.labels.shape[0])

"""Top-1 / top-5 error of 1, 2 (centre + flip) or 10 crops (paper §4.1 / §6: the softmax
outputs averaged over the four corners, the centre and their flips), per-class accuracy and the
confusion matrix; the loss is -log of the averaged probability of the true class. Under DDP
each rank evaluates its own shard (no padding) and the sums are all-reduced."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from alexnet.data import TEST_CROPS
from alexnet.data.augment import EvalTransform
from alexnet.errors import Param, UserError
from alexnet.runtime import all_reduce_sum
from alexnet.weights.meta import Preprocess, WeightsMeta


def make_eval_transform(
    preprocess: Preprocess | dict[str, Any], mean_image: torch.Tensor | None, crops: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 (B, 3, H, W) -> float (B*crops, C, S, S), image-major, from a weights' `Preprocess`
    (a dict in its JSON form is read with `Preprocess.from_json`); paper §4.1 for 10 crops."""
    if crops not in TEST_CROPS:
        raise ValueError(f"crops must be one of {', '.join(map(str, TEST_CROPS))}, got {crops}")
    pre = Preprocess.from_json(preprocess)
    base = EvalTransform(
        crop_size=pre.crop_size,
        crops=10 if crops == 10 else 1,
        resize=pre.resize,
        normalize=pre.normalize,
        mean_image=None if mean_image is None else np.asarray(mean_image, dtype=np.float32),
        mean=None if pre.mean is None else np.asarray(pre.mean, dtype=np.float32),
        std=None if pre.std is None else np.asarray(pre.std, dtype=np.float32),
        out_channels=pre.out_channels,
    )
    if crops != 2:
        return base

    def centre_and_flip(images: torch.Tensor) -> torch.Tensor:
        x = base(images)  # (B, C, S, S)
        return torch.stack([x, x.flip(-1)], dim=1).flatten(0, 1)

    return centre_and_flip


def distinct_crops(
    preprocess: Preprocess | dict[str, Any], image_size: tuple[int, int], crops: int
) -> int:
    """`crops`, or 2 when 10 would repeat the centre crop: an image (after the weights' resize,
    to `resize` x `resize`) no larger than the crop has its four corner crops equal to the
    centre one, so the 10 crops of paper §4.1 are the centre and its mirror, five times."""
    pre = Preprocess.from_json(preprocess)
    h, w = (pre.resize, pre.resize) if pre.resize else image_size
    return 2 if crops == 10 and max(h, w) <= pre.crop_size else crops


def check_images_fit(
    weights: str, meta: WeightsMeta, image_size: tuple[int, int], data: str | os.PathLike
) -> None:
    """UserError unless the eval transform of `weights` (`meta`) takes `data`'s (H, W) images:
    without a resize the crop must fit, and a mean image must have the images' size."""
    h, w = image_size
    preprocess, mean_image = meta.preprocess, meta.mean_image
    crop = int(preprocess.crop_size)
    if preprocess.resize:
        return
    if crop > min(h, w):
        raise UserError(
            f"{weights}: needs images of at least {crop}x{crop} px, but {data} holds {h}x{w}: "
            "use weights trained on this data (with ",
            Param("resize"),
            f" {crop} for a {crop} px model) or data packed at >= {crop} px",
        )
    if preprocess.normalize == "mean_image" and mean_image is not None:
        mh, mw = (int(s) for s in tuple(mean_image.shape)[:2])
        if (mh, mw) != (h, w):
            raise UserError(
                f"{weights}: its mean image is {mh}x{mw}, but {data} holds {h}x{w} images: use "
                "weights trained on this data"
            )


@torch.no_grad()
def evaluate(
    model: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    transform: Callable[[torch.Tensor], torch.Tensor],
    *,
    crops: int,
    num_classes: int,
    amp: bool = False,
    channels_last: bool = False,
    confusion: bool = False,
    per_image: bool = False,
) -> dict[str, Any]:
    """Run `model` (a torch module, or a CPU callable float (B, C, S, S) -> logits (B, K) such
    as `alexnet.export.OnnxModel`) over (uint8 images, labels) batches -> {"images", "crops",
    "top1_error", "top5_error" (None with <= 5 classes), "loss"}, plus "confusion" ((K, K) int64,
    rows = true class) and "top1_hit" ((N,) bool, this process's images in order) when asked."""
    is_module = isinstance(model, torch.nn.Module)
    was_training = is_module and model.training
    if is_module:
        model.eval()
    device = next(model.parameters()).device if is_module else torch.device("cpu")
    k5 = min(5, num_classes)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # n, top1 ok, top5 ok, loss
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    hits: list[torch.Tensor] = []
    for images, labels in batches:
        x = transform(images)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        labels = labels.to(logits.device)
        b = labels.shape[0]
        probs = F.softmax(logits.float(), dim=1).view(b, crops, -1).mean(dim=1)  # (B, K)
        top = probs.topk(k5, dim=1).indices
        hit = top == labels[:, None]
        p_true = probs.gather(1, labels[:, None]).squeeze(1)
        sums[0] += b
        sums[1] += hit[:, 0].sum().to(device)
        sums[2] += hit.any(dim=1).sum().to(device)
        sums[3] -= torch.log(p_true.double().clamp_min(1e-12)).sum().to(device)
        if per_image:
            hits.append(hit[:, 0].cpu())
        if confusion:
            idx = labels * num_classes + top[:, 0]
            conf += torch.bincount(idx, minlength=num_classes**2).view_as(conf).to(device)
    all_reduce_sum(sums)
    if confusion:
        all_reduce_sum(conf)
    if is_module:
        model.train(was_training)
    n = int(sums[0].item())
    denom = max(n, 1)
    out: dict[str, Any] = {
        "images": n,
        "crops": crops,
        "top1_error": 1.0 - sums[1].item() / denom,
        "top5_error": 1.0 - sums[2].item() / denom if num_classes > 5 else None,
        "loss": sums[3].item() / denom,
    }
    if confusion:
        out["confusion"] = conf.cpu()
    if per_image:
        out["top1_hit"] = torch.cat(hits) if hits else torch.zeros(0, dtype=torch.bool)
    return out


def per_class_accuracy(confusion: torch.Tensor) -> list[float | None]:
    """Accuracy of each true class (row of the confusion matrix); None for classes with no image."""
    pairs = zip(confusion.diagonal().tolist(), confusion.sum(dim=1).tolist())
    return [hits / total if total else None for hits, total in pairs]

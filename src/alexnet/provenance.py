"""Which weights and data made a features file, and whether weights fit a dataset's images.

Retrieval (paper §6.1) compares fc7 vectors by Euclidean distance: vectors from other weights
or other images are silently meaningless, so a features file records both and a mismatch is
refused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from alexnet.checkpoint import checkpoint_path
from alexnet.errors import UserError


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks; for a run directory given as
    weights, of the checkpoint the weights loader reads from it."""
    if Path(path).is_dir():
        path = checkpoint_path(Path(path))
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    return h.hexdigest()


def check_fits(predictor: Any, image_size: tuple[int, int], data: str | os.PathLike) -> None:
    """UserError unless `predictor`'s eval transform can take `data`'s (H, W) images: without a
    resize the crop must fit, and a mean image must have the images' size."""
    pre = predictor.preprocess
    h, w = image_size
    crop = int(pre.crop_size)
    if pre.resize:
        return
    if crop > min(h, w):
        raise UserError(
            f"{predictor.weights}: needs images of at least {crop}x{crop} px, but {data} holds "
            f"{h}x{w}: use weights trained on this data (alexnet train --data {data}, with "
            f"--resize {crop} for a {crop} px model) or data packed at >= {crop} px"
        )
    mean = predictor.mean_image
    if pre.normalize == "mean_image" and mean is not None:
        mh, mw = (int(s) for s in tuple(mean.shape)[:2])
        if (mh, mw) != (h, w):
            raise UserError(
                f"{predictor.weights}: its mean image is {mh}x{mw}, but {data} holds {h}x{w} "
                "images: use weights trained on this data"
            )


def features_source(weights: str | os.PathLike, dataset: Any) -> dict[str, str]:
    """What a features file records about its origin."""
    return {"weights_sha256": file_digest(weights), "data_fingerprint": dataset.fingerprint}


def check_features_source(
    feats_path: str | os.PathLike,
    meta: dict[str, Any],
    weights: str | os.PathLike,
    dataset: Any,
) -> None:
    """UserError when `weights` or `dataset` are not the ones that made the features file."""
    recorded = meta.get("weights_sha256")
    if recorded and file_digest(weights) != recorded:
        raise UserError(
            f"{feats_path}: computed with other weights ({meta.get('weights')}), not {weights}: "
            "distances would be meaningless; recompute with `alexnet features`"
        )
    recorded = meta.get("data_fingerprint")
    if recorded and dataset.fingerprint != recorded:
        raise UserError(
            f"{feats_path}: computed on another dataset ({meta.get('data')}), not "
            f"{Path(dataset.root)}; recompute with `alexnet features`"
        )

"""Training-set statistics computed while packing (paper §2 mean image, §4.1 fancy PCA).

Sums are kept as exact int64 integers (pixel values 0..255), so the result does not depend on
the order in which chunks arrive and a resumed `prepare` equals an uninterrupted one.
"""

from __future__ import annotations

import numpy as np


def chunk_sums(images: np.ndarray) -> dict[str, np.ndarray]:
    """Exact integer sums of a uint8 chunk (n, H, W, 3): count, per-pixel sum (H, W, 3),
    channel sum (3,), and sum of outer products of RGB vectors (3, 3)."""
    n, h, w, c = images.shape
    pixel_sum = images.sum(axis=0, dtype=np.int64)
    flat = images.reshape(-1, c).astype(np.float64)  # float64 matmul is exact below 2**53
    outer = flat.T @ flat if flat.size else np.zeros((c, c))
    return {
        "count": np.array(n, np.int64),
        "pixel_sum": pixel_sum,
        "channel_sum": pixel_sum.reshape(-1, c).sum(axis=0),
        "outer_sum": np.rint(outer).astype(np.int64),
    }


def zero_sums(height: int, width: int) -> dict[str, np.ndarray]:
    return {
        "count": np.array(0, np.int64),
        "pixel_sum": np.zeros((height, width, 3), np.int64),
        "channel_sum": np.zeros(3, np.int64),
        "outer_sum": np.zeros((3, 3), np.int64),
    }


def add_sums(total: dict[str, np.ndarray], part: dict[str, np.ndarray]) -> None:
    for key, value in part.items():
        total[key] = total[key] + value


def finalize(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Statistics in the [0, 1] pixel scale, float64: mean_image (H,W,3), channel_mean (3,),
    channel_std (3,) (population), rgb_cov (3,3) (population), eigval (3,) descending,
    eigvec (3,3) unit eigenvectors of rgb_cov as columns (largest |component| positive)."""
    n_img = int(sums["count"])
    h, w, _ = sums["pixel_sum"].shape
    n_pix = n_img * h * w
    if n_img == 0:
        nan3 = np.full(3, np.nan)
        return {
            "mean_image": np.full((h, w, 3), np.nan),
            "channel_mean": nan3,
            "channel_std": nan3,
            "rgb_cov": np.full((3, 3), np.nan),
            "eigval": nan3,
            "eigvec": np.full((3, 3), np.nan),
        }
    mean_image = sums["pixel_sum"].astype(np.float64) / (255.0 * n_img)
    mean = sums["channel_sum"].astype(np.float64) / (255.0 * n_pix)
    second = sums["outer_sum"].astype(np.float64) / (255.0**2 * n_pix)
    cov = second - np.outer(mean, mean)
    cov = (cov + cov.T) / 2
    std = np.sqrt(np.clip(np.diag(cov), 0, None))
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    for i in range(3):  # deterministic signs
        if eigvec[np.argmax(np.abs(eigvec[:, i])), i] < 0:
            eigvec[:, i] = -eigvec[:, i]
    return {
        "mean_image": mean_image,
        "channel_mean": mean,
        "channel_std": std,
        "rgb_cov": cov,
        "eigval": np.clip(eigval, 0, None),
        "eigvec": eigvec,
    }

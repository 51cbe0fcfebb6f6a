"""The paper's pictures with matplotlib (Agg, headless): conv1's kernels (Fig. 3), training
curves, nearest neighbours (Fig. 4), and Zeiler & Fergus's unit patches and occlusion maps.
Each writes a picture of a known pixel size (figure inches x dpi, no tight bbox)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.fileio import atomic_write
from alexnet.rundir import RunDir, read_jsonl

DPI = 100  # dots per inch of every picture: (pixels) / DPI = inches


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("pictures need matplotlib (pip install 'alexnet[viz]')") from None
    return plt


def save_figure(fig, out: str | os.PathLike, dpi: int) -> None:
    """Write `fig` to `out` atomically in its suffix's format (PNG without one), then close it."""
    fmt = Path(out).suffix[1:].lower() or "png"
    atomic_write(Path(out), lambda f: fig.savefig(f, dpi=dpi, format=fmt))
    _pyplot().close(fig)


def _show(ax, image: np.ndarray, **kw: Any) -> None:
    """`image` on `ax`, each pixel a sharp square, without ticks."""
    ax.imshow(image, interpolation="nearest", **kw)
    ax.set_xticks([])
    ax.set_yticks([])


def first_conv_weight(model: nn.Module) -> torch.Tensor:
    """conv1's weight (O, C, kh, kw) of any model in the family (the first Conv2d)."""
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return conv.weight.detach().float().cpu()


def tile_kernels(weight: torch.Tensor, columns: int, gap: int = 1) -> np.ndarray:
    """(O, C, k, k) -> one (rows*(k+gap)-gap, columns*(k+gap)-gap, 3) image in [0, 1] (`tile`),
    each kernel min-max normalized on its own, 1-channel kernels gray, the gaps white."""
    w = weight.numpy().astype(np.float64)
    o, c, kh, kw = w.shape
    if c == 1:  # the family's inputs: 1 or 3 channels
        w = np.repeat(w, 3, axis=1)
    lo = w.reshape(o, -1).min(1)[:, None, None, None]
    hi = w.reshape(o, -1).max(1)[:, None, None, None]
    w = (w - lo) / np.where(hi > lo, hi - lo, 1.0)
    return tile(w.transpose(0, 2, 3, 1), columns, gap, fill=1.0)


def tile(images: np.ndarray, columns: int, gap: int = 1, fill: float = 1.0) -> np.ndarray:
    """(N, h, w, C) -> one (rows*(h+gap)-gap, columns*(w+gap)-gap, C) grid, row by row, with
    `fill` in the gaps and after the last image."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, c), fill, images.dtype)
    for i, img in enumerate(images):  # at most a few hundred small images: a plain paste
        y, x = (i // columns) * (h + gap), (i % columns) * (w + gap)
        out[y : y + h, x : x + w] = img
    return out


def kernel_grid(
    model: nn.Module,
    out: str | os.PathLike,
    *,
    title: str | None = None,
    width_px: int = 800,
) -> tuple[int, int]:
    """Write the conv1 kernel grid (paper Fig. 3) to `out`; return its (width, height) in px.
    The `paper` model's two towers are separate blocks (§3.2: the GPUs specialise)."""
    plt = _pyplot()
    weight = first_conv_weight(model)
    cfg = getattr(model, "config", {})
    name = cfg.get("name", "model")
    towers = int(cfg.get("options", {}).get("towers", 1)) if name == "paper" else 1
    o, c, k, _ = weight.shape
    blocks = list(weight.chunk(towers, 0))
    per_block = blocks[0].shape[0]
    columns = 16 if per_block >= 32 else max(1, min(per_block, 8))
    tiles = [tile_kernels(b, columns) for b in blocks]
    heading = title or f"conv1 of {name!r}: {o} kernels {k}x{k}x{c}, each normalized"
    ratios = [t.shape[0] for t in tiles]
    height_px = int(round(width_px * sum(ratios) / tiles[0].shape[1] + 60 + 30 * len(tiles)))
    fig = plt.figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    fig.suptitle(heading, fontsize=11)
    axes = fig.subplots(len(tiles), 1, gridspec_kw={"height_ratios": ratios}, squeeze=False)
    for i, (ax, tile) in enumerate(zip(axes[:, 0], tiles)):
        _show(ax, tile)
        if towers == 2:
            ax.set_title(f"tower {i + 1} (GPU {i + 1}): {blocks[i].shape[0]} kernels", fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 45 / height_px, bottom=0.01, hspace=0.25)
    save_figure(fig, out, DPI)
    return width_px, height_px


def read_metrics(run: str | os.PathLike) -> list[dict[str, Any]]:
    """RUN/metrics.jsonl (or the file itself) -> records; UserError naming the file."""
    path = Path(run)
    if path.is_dir():
        path = RunDir(path).metrics
    records = read_jsonl(path)
    if not records:
        raise UserError(f"{path}: no epochs recorded yet")
    return records


def training_curves(
    runs: list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    labels: list[str] | None = None,
) -> tuple[int, int]:
    """Training loss | validation top-1 and top-5 error (%) per epoch, one colour per run."""
    plt = _pyplot()
    size_px = (1000, 400)
    data = [read_metrics(r) for r in runs]
    names = labels or [Path(r).name or str(r) for r in runs]
    if len(set(names)) < len(names):
        names = [str(r) for r in runs]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(size_px[0] / DPI, size_px[1] / DPI))
    has_val = False
    for i, (records, name) in enumerate(zip(data, names)):
        color = f"C{i % 10}"
        ep = [r["epoch"] for r in records]
        train = [r["train_loss"] for r in records]
        ax_loss.plot(ep, train, "o-", color=color, label=f"{name} training")
        if all("val_loss" in r for r in records):
            has_val = True
            val = [r["val_loss"] for r in records]
            ax_loss.plot(ep, val, "s--", color=color, alpha=0.6, label=f"{name} validation")
        partial = [(e, t) for e, t, r in zip(ep, train, records) if r.get("complete") is False]
        if partial:  # an epoch cut short by --max-steps
            ax_loss.plot(*zip(*partial), "x", color="k", ms=9, label="partial epoch (--max-steps)")
        top1 = [100 * r["val_top1_error"] for r in records]
        ax_err.plot(ep, top1, "o-", color=color, label=f"{name} top-1")
        if all(r.get("val_top5_error") is not None for r in records):  # None: <= 5 classes
            top5 = [100 * r["val_top5_error"] for r in records]
            ax_err.plot(ep, top5, "^:", color=color, label=f"{name} top-5")
    ax_loss.set_title("loss (solid: training, dashed: validation)", fontsize=10)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    if has_val:
        note = (
            "training loss is measured on augmented crops, with dropout\n"
            "and label smoothing, so it can sit above the validation loss"
        )
        ax_loss.text(
            0.02, 0.02, note, transform=ax_loss.transAxes, va="bottom", fontsize=6.5, color="0.35"
        )
    ax_err.set_title("validation error", fontsize=10)
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel("error (%)")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out, DPI)
    return size_px


def neighbors_grid(
    queries: list[np.ndarray],
    neighbours: list[list[np.ndarray]],
    out: str | os.PathLike,
    *,
    query_titles: list[str] | None = None,
    neighbour_titles: list[list[str]] | None = None,
    feature: str = "fc7",
) -> tuple[int, int]:
    """Paper Fig. 4 (§6.1): row i = query i, then its neighbours, nearest first; images
    (H, W, 3) uint8 of any size. Returns the PNG's (width, height) in pixels."""
    plt = _pyplot()
    cell_px, rows = 110, len(queries)
    if rows == 0:
        raise UserError("no queries to draw")
    cols = 1 + max(len(n) for n in neighbours)
    w, h = cols * cell_px + cell_px // 4, rows * cell_px + 60
    fig = plt.figure(figsize=(w / DPI, h / DPI), dpi=DPI)
    width_ratios = [1.0, 0.25] + [1.0] * (cols - 1)
    grid = fig.add_gridspec(rows, cols + 1, width_ratios=width_ratios, wspace=0.05, hspace=0.3)
    for r in range(rows):
        cells = [(0, queries[r], (query_titles or [""] * rows)[r])]
        titles = (neighbour_titles or [[""] * len(n) for n in neighbours])[r]
        cells += [(j + 2, img, t) for j, (img, t) in enumerate(zip(neighbours[r], titles))]
        for col, img, text in cells:
            ax = fig.add_subplot(grid[r, col])
            _show(ax, img)
            if col == 0:
                for spine in ax.spines.values():
                    spine.set_edgecolor("crimson")
                    spine.set_linewidth(2)
            if text:
                ax.set_title(text, fontsize=7, pad=2)
    heading = f"query (left), its nearest training images by {feature} distance"
    fig.suptitle(heading, fontsize=9, y=1 - 8 / h, va="top")
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 50 / h, bottom=0.01)
    save_figure(fig, out, DPI)
    return w, h


def captioned_grid(
    images: list[np.ndarray],
    captions: list[str],
    out: str | os.PathLike,
    *,
    title: str = "",
) -> tuple[int, int]:
    """Images in a grid with a caption under each (e.g. predictions); returns (w, h) px."""
    plt = _pyplot()
    if not images:
        raise UserError("no images to draw")
    columns, cell_px = min(4, len(images)), 170
    rows = -(-len(images) // columns)
    w, h = columns * cell_px, rows * int(cell_px * 1.5) + (30 if title else 0)
    fig, axes = plt.subplots(rows, columns, figsize=(w / DPI, h / DPI), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, text in zip(axes.flat, images, captions):
        ax.imshow(img, interpolation="nearest")
        ax.text(0.5, -0.05, text, transform=ax.transAxes, ha="center", va="top", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    top = 1 - (30 if title else 5) / h
    fig.subplots_adjust(left=0.01, right=0.99, top=top, bottom=60 / h, hspace=0.45, wspace=0.05)
    save_figure(fig, out, DPI)
    return w, h


def save_confusion_png(confusion: torch.Tensor, classes: list[str], path: str) -> None:
    """Row-normalized confusion matrix (`alexnet.evaluate`'s counts, (K, K)) as a PNG."""
    plt = _pyplot()
    m = confusion.double()
    m = (m / m.sum(dim=1, keepdim=True).clamp_min(1)).numpy()
    k = len(classes)
    size = min(4 + 0.35 * k, 30)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    if k <= 50:
        ax.set_xticks(range(k), classes, rotation=90, fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
    cells = [(i, j) for i in range(k) for j in range(k) if m[i, j] >= 0.005] if k <= 20 else []
    for i, j in cells:
        color = "white" if m[i, j] > 0.5 else "black"
        ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (rows normalized)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_figure(fig, path, DPI)


def unit_patches_grid(
    patches: np.ndarray,
    units: list[int],
    activations: list[list[float]],
    out: str | os.PathLike,
    *,
    title: str = "",
) -> tuple[int, int]:
    """Zeiler & Fergus (2014) Fig. 2: one row per unit, its top-K input patches left to right
    (`patches` (U, K, r, r, 3) in [0, 1], gray where the receptive field leaves the image);
    the activation above each patch. Returns (w, h) px."""
    plt = _pyplot()
    (u, k), cell_px = patches.shape[:2], 64
    w, h = 70 + k * cell_px, 50 + u * (cell_px + 14)
    fig, axes = plt.subplots(u, k, figsize=(w / DPI, h / DPI), dpi=DPI, squeeze=False)
    for row, (unit, acts) in enumerate(zip(units, activations)):
        for col in range(k):
            ax = axes[row, col]
            if col < len(acts):
                _show(ax, patches[row, col])
                ax.set_title(f"{acts[col]:.3g}", fontsize=6, pad=1)
            else:
                ax.axis("off")
        axes[row, 0].set_ylabel(f"unit {unit}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 6 / h, va="top")
    fig.subplots_adjust(
        left=60 / w, right=0.99, top=1 - 40 / h, bottom=0.01, hspace=0.35, wspace=0.08
    )
    save_figure(fig, out, DPI)
    return w, h


def occlusion_map(
    image: np.ndarray,
    drop: np.ndarray,
    patch: int,
    stride: int,
    out: str | os.PathLike,
    *,
    title: str = "",
) -> tuple[int, int]:
    """Zeiler & Fergus (2014) Fig. 7: the model input (S, S, 3) in [0, 1] and beside it the drop
    in the top class's probability when a patch x patch square centred there is zeroed,
    (n, n), drawn over the image (red: the class needs that region). Returns (w, h) px."""
    plt = _pyplot()
    w, h = 760, 400
    fig, (left, right) = plt.subplots(1, 2, figsize=(w / DPI, h / DPI), dpi=DPI)
    n = drop.shape[0]
    lo, hi = patch / 2 - stride / 2, patch / 2 + (n - 1) * stride + stride / 2
    limit = float(np.abs(drop).max()) or 1.0
    gray = image.mean(axis=2) if image.shape[2] == 3 else image[..., 0]
    whole = (0, image.shape[1], image.shape[0], 0)  # pixel i covers [i, i + 1)
    _show(left, image, extent=whole)
    _show(right, gray, cmap="gray", vmin=0, vmax=1, extent=whole)
    box = (lo, hi, hi, lo)
    shown = right.imshow(
        drop, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.6, extent=box, interpolation="nearest"
    )
    right.set_xlim(0, image.shape[1])
    right.set_ylim(image.shape[0], 0)
    left.set_title("model input", fontsize=9)
    right.set_title(f"probability drop ({patch} px squares, stride {stride})", fontsize=9)
    fig.colorbar(shown, ax=right, fraction=0.046)
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, out, DPI)
    return w, h

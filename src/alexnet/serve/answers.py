"""What the server computes: one model, its answers, the neighbour index (paper §6.1, Fig. 4),
conv1's kernels (Fig. 3) and feature maps. Uploads go through `alexnet predict`'s code, so an
upload's answer equals `alexnet predict --json` on the same file and weights."""

from __future__ import annotations

import io
import os
from typing import Any
from urllib.parse import quote

import numpy as np
import torch
from PIL import Image

from alexnet.data.packed import open_dataset, read_header
from alexnet.errors import Param, UserError
from alexnet.explain import Layer, layer_json, layers, occlusion, occlusion_json, strongest_units
from alexnet.inference import Predictor, decode_at_size, index_rows, load_features, neighbours
from alexnet.runtime import flush_denormals
from alexnet.viz import first_conv_weight, tile, tile_kernels


class ApiError(Exception):
    """An HTTP error answer: `status`, a one-line `message` (sent as {"error": message})."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes, each pixel repeated `scale` times each way."""
    img = Image.fromarray(np.ascontiguousarray(image))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


class NeighbourIndex:
    """Features from `alexnet features` and the images they came from: a packed split, or an
    image folder (its files read as `predict` reads them)."""

    def __init__(self, path: str | os.PathLike, predictor: Predictor, dim: int) -> None:
        feats, meta = load_features(path)
        if feats.shape[1] != dim:
            raise UserError(
                Param("index"), f" {path}: features of size {feats.shape[1]}, model gives {dim}"
            )
        if not meta.get("data"):
            raise UserError(Param("index"), f" {path}: names no packed dataset or image folder")
        self.feats = np.ascontiguousarray(feats, dtype=np.float32)
        self.weights = meta.get("weights")
        self.data = str(meta["data"])
        self.rows = index_rows(meta, self.data, predictor)
        self.split = self.rows.split
        self.splits = [] if self.split is None else list(read_header(self.data)["splits"])
        self._datasets = {} if self.split is None else {self.split: self.rows.dataset}
        self._paths = set(self.rows.ids) if self.split is None else set()

    def search(self, queries: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
        """(Q, D) features -> for each query its k nearest images (Euclidean, paper §6.1)."""
        found = neighbours(queries, self.feats, self.rows, k)
        for n in (n for row in found for n in row):
            if self.split is None:
                n["image"] = f"/v1/files/{quote(n['path'])}"
            else:
                n["image"] = f"/v1/images/{self.split}/{n['index']}.png"
        return found

    def thumbnail(self, split: str, i: int) -> bytes:
        """Image `i` of a split of the indexed packed dataset, as stored."""
        if split not in self.splits:
            raise ApiError(404, f"no split {split!r} (has {', '.join(self.splits) or 'none'})")
        if split not in self._datasets:
            self._datasets[split] = open_dataset(self.data, split)
        ds = self._datasets[split]
        if not 0 <= i < len(ds):
            raise ApiError(404, f"image {i} out of range: split {split!r} has {len(ds)} images")
        return png_bytes(np.asarray(ds.images[i]))

    def file_thumbnail(self, path: str) -> bytes:
        """A file of the indexed folder (only those the index lists), at the stored size."""
        if path not in self._paths:
            raise ApiError(404, f"{path}: not an image of the index")
        try:
            return png_bytes(self.rows.image(path))
        except UserError as exc:
            raise ApiError(404, str(exc)) from None


class Engine:
    """A `Predictor` plus the server's extras; every method that runs the model is meant for
    the batcher's single worker thread."""

    def __init__(
        self,
        weights: str | os.PathLike,
        device: str | torch.device = "cpu",
        *,
        crops: int = 1,
        index: str | os.PathLike | None = None,
        max_pixels: int = 40_000_000,
    ) -> None:
        self.predictor = p = Predictor(weights, device, crops=crops)
        self.max_pixels = int(max_pixels)
        probe = np.zeros((1, p.image_size, p.image_size, 3), np.uint8)
        self.feature_dim = int(p.features(probe).shape[1])
        self.index = NeighbourIndex(index, p, self.feature_dim) if index else None

    thread_init = staticmethod(flush_denormals)  # on the model thread, as the CLI does on its own

    def info(self) -> dict[str, Any]:
        p = self.predictor
        return {
            "name": p.meta.model_name,
            "config": p.meta.model_config,
            "classes": p.classes,
            "num_classes": len(p.classes),
            "input_size": int(p.preprocess.crop_size),
            "image_size": p.image_size,
            "crops": p.crops,
            "feature_dim": self.feature_dim,
            "feature_layer": p.feature_layer,
            "layers": [] if p.onnx else [n for n, la in self._layers().items() if la.kind != "fc"],
            "preprocess": p.preprocess.to_json(),
            "metadata": p.meta.extra,
            "index": None
            if self.index is None
            else {"split": self.index.split, "count": len(self.index.rows.ids)},
        }

    def decode(self, data: bytes, name: str) -> np.ndarray:
        """Upload bytes -> uint8 (S, S, 3) at the stored size; ApiError 413 for a decompression
        bomb (pixel count read from the header before decoding), 415 for anything else."""
        p = self.predictor
        decoded = decode_at_size(data, name, p.image_size, p.resize_rule, self.max_pixels)
        if decoded.image is None:
            bomb = (decoded.skip or "").startswith("decompression bomb")
            raise ApiError(413 if bomb else 415, f"{name}: {decoded.skip}")
        return decoded.image

    def run_batch(self, kind: str, images: np.ndarray) -> list[torch.Tensor]:
        """uint8 (B, S, S, 3) -> B rows: class probabilities (K,) for kind "predict", else
        features (D,), float32."""
        p = self.predictor
        return list((p.probabilities if kind == "predict" else p.features)(images).cpu())

    def _model(self, what: str, status: int) -> torch.nn.Module:
        """The torch model; ApiError `status` for an ONNX model, which has none."""
        if self.predictor.onnx:
            raise ApiError(status, f"{what}: not available from an ONNX model (serve its weights)")
        return self.predictor.model

    def _layers(self) -> dict[str, Layer]:
        return layers(self.predictor.model, int(self.predictor.preprocess.crop_size))

    def kernels_png(self, columns: int = 16) -> bytes:
        """conv1's kernels (paper Fig. 3), each min-max normalized, `columns` per row."""
        weight = first_conv_weight(self._model("kernels", 501))
        tiles = (tile_kernels(weight, columns=columns) * 255).round().astype(np.uint8)
        return png_bytes(tiles, scale=max(1, 96 // (weight.shape[-1] * 2)))

    @torch.no_grad()
    def occlusion(self, image: np.ndarray, patch: int | None, stride: int | None) -> dict:
        """Where the network looks (Zeiler & Fergus 2014, section 4.2) for one uint8 image at
        the stored size: the top class and `alexnet.explain.occlusion`'s drop grid, as
        `alexnet predict --explain occlusion --json` gives it (`input_size` added)."""
        p, model = self.predictor, self._model("occlusion", 422)
        c = int(p.probabilities(image[None])[0].argmax())
        try:
            found = occlusion(model, p.inputs(image[None]), c, patch, stride)
        except UserError as exc:  # patch or stride
            raise ApiError(422, str(exc)) from None
        size = int(p.preprocess.crop_size)
        return {**occlusion_json(found, p.classes[c], c), "input_size": size}

    @torch.no_grad()
    def units(self, image: np.ndarray, layer: str, k: int) -> dict:
        """The k units of `layer` that fire most on one uint8 image at the stored size, with
        where (`alexnet.explain.strongest_units`), and the layer's receptive field and jump."""
        model, found = self._model("units", 422), self._layers()
        if layer not in found:
            raise ApiError(404, f"no layer {layer!r} (has {', '.join(found)})")
        x = self.predictor.inputs(image[None])
        return layer_json(found[layer], x.shape[-1], strongest_units(model, x, found[layer], k))

    @torch.no_grad()
    def conv1_png(self, image: np.ndarray, columns: int = 16) -> bytes:
        """conv1 feature maps after ReLU of one image's centre crop, as a PNG grid (gray, each
        map scaled by its own maximum, white gaps)."""
        model = self._model("conv1 maps", 501)
        conv1 = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        seen: list[torch.Tensor] = []
        hook = conv1.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
        try:
            self.predictor.features(image[None])
        finally:
            hook.remove()
        maps = seen[0][0].float().clamp_min(0)
        top = maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
        maps = (maps / top * 255).round().to(torch.uint8).cpu().numpy()[..., None]
        grid = tile(maps, min(columns, maps.shape[0]), 1, fill=255)
        return png_bytes(np.repeat(grid, 3, axis=2), max(1, 64 // maps.shape[2]))

"""What a weights file says besides its tensors: the model, the classes, the evaluation
preprocessing (paper §2: a fixed size, the centre 224 patch or §4.1's ten, minus the mean)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from alexnet.errors import UserError


@dataclass(frozen=True)
class Preprocess:
    """Evaluation preprocessing of a model's inputs.

    crop_size: side S of the network input (224 in paper §2).
    image_size: side that image files are first brought to (shorter side, centre crop);
        None when not recorded (see `stored_image_size`).
    resize: resize the stored images to this side on the device before cropping, or None.
    out_channels: 3 (RGB) or 1 (grey) channels fed to the network.
    normalize: "mean_image" (paper §2: subtract the training set's mean image), "channel"
        (per-channel mean / std) or "none" (only scale to [0, 1]).
    mean, std: per-channel values for "channel", in [0, 1] units.
    resize_rule: "paper" or "torchvision" (torchvision's Resize rounding of the shorter side).
    """

    crop_size: int
    image_size: int | None = None
    resize: int | None = None
    out_channels: int = 3
    normalize: str = "none"
    mean: list[float] | None = None
    std: list[float] | None = None
    resize_rule: str = "paper"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Any) -> Preprocess:
        """Read `to_json`'s dict (missing keys: defaults; unknown: ignored) or a `Preprocess`."""
        if isinstance(d, cls):
            return d
        if not isinstance(d, dict) or "crop_size" not in d:
            raise UserError(f"preprocessing metadata without crop_size: {str(d)[:80]}")
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in names and v is not None}
        for key in ("mean", "std"):
            if key in values:
                values[key] = [float(v) for v in values[key]]
        return cls(**values)

    def stored_image_size(self) -> int:
        """Side image files are packed at: `image_size`, else the resize side, else the crop for
        small (28/32 px) models and the paper's 256 for 224/227 crops (§2)."""
        if self.image_size:
            return int(self.image_size)
        if self.resize:
            return int(self.resize)
        crop = int(self.crop_size)
        return crop if crop < 64 else round(crop * 256 / 224)


@dataclass
class WeightsMeta:
    """Metadata of a weights file of any format.

    model_config: the model's `config` ({"name", "options"}), enough for `get_model`.
    classes: class names, index order of the logits (K of them).
    preprocess: the evaluation preprocessing.
    extra: free-form facts (recipe, epoch, val errors, source, layout).
    mean_image: (H, W, C) float32 training mean image for normalize "mean_image", else None.
    format: where the weights came from: "alexnet", "torchvision", "two-device" or "checkpoint".
    path: the file read.
    """

    model_config: dict[str, Any]
    classes: list[str]
    preprocess: Preprocess
    extra: dict[str, Any] = field(default_factory=dict)
    mean_image: torch.Tensor | None = None
    format: str = "alexnet"
    path: str = ""

    @classmethod
    def parse(
        cls, model: Any, classes: Any, preprocess: Any, extra: Any, **rest: Any
    ) -> WeightsMeta:
        """Metadata from a file's JSON values (KeyError, TypeError, ValueError or UserError when
        damaged); `rest`: mean_image, format, path."""
        return cls(
            model_config=dict(model),
            classes=[str(c) for c in classes],
            preprocess=Preprocess.from_json(preprocess),
            extra=dict(extra),
            **rest,
        )

    @property
    def model_name(self) -> str:
        return str(self.model_config.get("name", "?"))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

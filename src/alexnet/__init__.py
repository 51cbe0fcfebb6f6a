"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012), faithful and fast.

Public API:
    get_model(name, num_classes=1000, **options) -> AlexNetModel (an nn.Module)
    list_models() -> list[str]
    open_dataset(path, split="train") -> PackedDataset of (HxWx3 uint8 image, int label)
    UserError: the exception for user mistakes (one line naming the file or flag)
Weights of every format: `alexnet.weights.load(path)` -> (model, metadata).

The functions here import their modules when called, so that `import alexnet.errors` (which
runs this file first) stays free of torch.
"""

from __future__ import annotations

from alexnet.errors import UserError

TYPE_CHECKING = False  # (typing costs milliseconds of every command's start-up)
if TYPE_CHECKING:
    from typing import Any

    from alexnet.data.packed import PackedDataset
    from alexnet.models.common import AlexNetModel

__version__ = "0.1.0"

__all__ = ["__version__", "get_model", "list_models", "open_dataset", "UserError"]


def get_model(name: str, num_classes: int | None = None, **options: Any) -> AlexNetModel:
    """Build a model of the family by name (see `list_models()`).

    num_classes defaults to 1000 (10 for `small`); options are the model class's keywords.
    """
    from alexnet.models.registry import get_model as _get_model

    return _get_model(name, num_classes=num_classes, **options)


def list_models() -> list[str]:
    """Names accepted by `get_model`."""
    from alexnet.models.registry import list_models as _list_models

    return _list_models()


def open_dataset(path: str, split: str = "train") -> PackedDataset:
    """Open a packed dataset directory written by `alexnet prepare` for reading."""
    from alexnet.data.packed import open_dataset as _open_dataset

    return _open_dataset(path, split)

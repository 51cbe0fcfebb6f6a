"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012), faithful and fast: `get_model`,
`from_pretrained`, `list_models`, `open_dataset` and `UserError` (a user mistake, in one line
naming the file or flag); weights of every format: `alexnet.weights.load(path)` -> (model,
metadata). The functions import their modules when called: `import alexnet` needs no torch."""

from __future__ import annotations

from alexnet.errors import UserError as UserError

TYPE_CHECKING = False  # (typing costs milliseconds of every command's start-up)
if TYPE_CHECKING:
    from typing import Any

    from alexnet.data.packed import PackedDataset
    from alexnet.models.common import AlexNetModel

__version__ = "0.1.0"


def get_model(
    name: str, num_classes: int | None = None, weights: str | None = None, **options: Any
) -> AlexNetModel:
    """Build a model of the family by name (see `list_models()`); num_classes defaults to 1000
    (10 for `small`), options are the model class's keywords. weights: None (freshly
    initialised) or anything `alexnet.weights.load` reads: the model in eval mode, its last
    layer re-made (with a warning) when num_classes differs (`alexnet.weights.load_for`)."""
    if weights is not None:
        from alexnet.weights import load_for

        return load_for(weights, num_classes, name, **options)  # type: ignore[return-value]
    from alexnet.models.registry import get_model as _get_model

    return _get_model(name, num_classes=num_classes, **options)


def from_pretrained(
    folder_or_id: str, num_classes: int | None = None, **options: Any
) -> AlexNetModel:
    """The model of a Hugging Face-style folder (`alexnet export --hf DIR`) or Hub id
    "user/name" (pip install 'alexnet[hub]'), in eval mode on the CPU; any weights
    `alexnet.weights.load` reads work too."""
    from alexnet.weights import load_for

    return load_for(folder_or_id, num_classes, **options)  # type: ignore[return-value]


def list_models() -> list[str]:
    """Names accepted by `get_model`."""
    from alexnet.models.registry import list_models as _list_models

    return _list_models()


def open_dataset(path: str, split: str = "train") -> PackedDataset:
    """A packed dataset directory written by `alexnet prepare`, for reading: items are
    (H x W x 3 uint8 image, int label)."""
    from alexnet.data.packed import open_dataset as _open_dataset

    return _open_dataset(path, split)

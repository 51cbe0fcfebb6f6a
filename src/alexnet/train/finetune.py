"""Fine-tuning (paper §6: pre-trained on ImageNet Fall 2011, "fine-tuned" on ILSVRC-2012): a run
that starts from trained weights (`--init-from`), the last layer re-made for the data's classes,
layers kept fixed (`--freeze`), the last layer learning faster (`--head-lr-factor`)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
from torch import nn

from alexnet.data.packed import DatasetStats
from alexnet.errors import UserError
from alexnet.weights.meta import Preprocess, WeightsMeta

FEATURES = "features"  # --freeze features: every conv layer
_FOLLOWERS = (nn.ReLU, nn.Tanh, nn.modules.batchnorm._BatchNorm)  # part of the layer before them


@functools.lru_cache(maxsize=1)  # read once for `weights_config` and `start_from`
def _read(init_from: str) -> tuple[dict[str, Any], WeightsMeta]:
    from alexnet.weights.files import read  # every weights format: only a run that starts from one

    return read(init_from)


def weights_config(init_from: str) -> dict[str, Any]:
    """The config fields that weights `init_from` decide: the model, its options (but the number
    of classes, which the data decides) and the input normalization they were trained with."""
    _, meta = _read(init_from)
    options = dict(meta.model_config.get("options", {}))
    options.pop("num_classes", None)
    return {
        "model": meta.model_name,
        "model_options": options,
        "normalize": meta.preprocess.normalize,
    }


def prepare(
    net: nn.Module, init_from: str | None, freeze_spec: str | None, train_ds, saved, say
) -> DatasetStats:
    """A run's start as `--init-from` and `--freeze` ask (each said in one line): the weights'
    tensors in `net` (a fresh run), the layers frozen; returns the train split's statistics with
    the normalization the run trains with (the weights', or the checkpoint `saved`'s)."""
    stats = train_ds.stats
    if init_from and saved is not None:
        pre = Preprocess.from_json(saved.preprocess)
        stats = normalization_stats(stats, pre, saved.mean_image)
    elif init_from:
        weights, head = start_from(net, init_from, list(train_ds.classes))
        stats = normalization_stats(stats, weights.preprocess, weights.mean_image)
        names = ", ".join(map(str, train_ds.classes[:4]))
        names += ", ..." if train_ds.num_classes > 4 else ""
        remade = f"; the last layer ({', '.join(head)}) is re-made for the data's "
        remade += f"{train_ds.num_classes} classes ({names})"
        say(
            f"starting from {weights.path} ({weights.model_name}, {weights.num_classes} classes)"
            + (remade if head else "")
        )
    if freeze_spec:
        say(f"frozen: {', '.join(freeze(net, freeze_spec))}")
    return stats


def start_from(net: nn.Module, init_from: str, classes: list[str]) -> tuple[WeightsMeta, list[str]]:
    """Copy the tensors of weights `init_from` into `net`; the last layer keeps `net`'s fresh
    initialization when the data's `classes` differ from the weights' (in number or in name).
    Returns (the weights' metadata, the names of the re-made tensors: [] or fc8's two)."""
    tensors, meta = _read(init_from)
    _read.cache_clear()  # the tensors live on in `net` only
    own = net.state_dict()
    missing = sorted(own.keys() - tensors.keys())
    other = sorted(k for k in own.keys() & tensors.keys() if own[k].shape != tensors[k].shape)
    last = sorted(last_layer_names(net))
    if missing or not set(other) <= set(last):
        raise UserError(
            f"{meta.path}: tensors {(missing + other)[:3]} do not fit the "
            f"{meta.model_name!r} model built for the data"
        )
    head = last if other or list(meta.classes) != list(classes) else []
    net.load_state_dict({**tensors, **{k: own[k] for k in head}}, strict=False)
    return meta, head


def normalization_stats(stats: DatasetStats, pre: Preprocess, mean_image: Any) -> DatasetStats:
    """The data's statistics with the normalization of the weights a run starts from (`pre`, and
    their mean image (H, W, C) or None, paper §2, when it has the data's size): what the
    pre-trained layers expect. Lighting (§4.1) keeps the data's eigenpairs."""
    channels = np.asarray(stats.channel_mean).size
    changed: dict[str, Any] = {}
    for name, values in (("channel_mean", pre.mean), ("channel_std", pre.std)):
        if values is not None and len(values) == channels:
            changed[name] = np.asarray(values, dtype=np.float32)
    if mean_image is not None and tuple(np.shape(mean_image)) == np.shape(stats.mean_image):
        changed["mean_image"] = np.asarray(mean_image, dtype=np.float32)
    return dataclasses.replace(stats, **changed)


def freeze(net: nn.Module, spec: str) -> list[str]:
    """Keep the layers that `spec` names fixed: `features` (every conv layer) or a layer as
    `alexnet summary` names it (with every one before it and the activation and BatchNorm after
    it): no gradients, BatchNorm in evaluation mode. Returns their names, in call order."""
    from alexnet.models.summary import layer_kind, layer_table, trace  # layer names: --freeze

    leaves = [m for m in net.modules() if not any(True for _ in m.children())]
    calls = [module for module, _, _ in trace(net, leaves, net.input_size)]
    names = [row.name for row in layer_table(net, net.input_size)]
    at = [i for i, module in enumerate(calls) if layer_kind(module)]
    if spec == FEATURES:
        spec = [n for n, i in zip(names, at) if layer_kind(calls[i]) == "conv"][-1]
    if spec not in names:
        model = net.config["name"]
        raise UserError(f"freeze {spec!r}: the {model!r} model has {FEATURES}, {', '.join(names)}")
    end = at[names.index(spec)]
    while end + 1 < len(calls) and isinstance(calls[end + 1], _FOLLOWERS):
        end += 1
    for module in calls[: end + 1]:
        module.requires_grad_(False)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.register_forward_pre_hook(_keep_statistics)
    return names[: names.index(spec) + 1]


def _keep_statistics(module: nn.Module, args: Any) -> None:
    module.training = False


def param_groups(net: nn.Module, head_lr_factor: float) -> list[dict[str, Any]]:
    """SGD's parameter groups: the trainable parameters, and with a factor other than 1 the
    last layer's apart with `lr_factor` (the schedule's rate times it)."""
    trainable = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
    if head_lr_factor == 1.0:
        return [{"params": [p for _, p in trainable]}]
    head_names = last_layer_names(net)
    body = [p for name, p in trainable if name not in head_names]
    head = [p for name, p in trainable if name in head_names]
    return [{"params": body}, {"params": head, "lr_factor": head_lr_factor}]


def last_layer_names(net: nn.Module) -> set[str]:
    """The parameter names of the layer that gives the logits (paper: fc8)."""
    last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    return {name for name, p in net.named_parameters() if any(p is q for q in last.parameters())}

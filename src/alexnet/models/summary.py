"""The per-layer table (the seed's form, corrected), measured from the model object itself.

Shapes come from running a forward pass with hooks; weights, biases and multiply-adds from
the layers' own attributes. Nothing is typed in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from alexnet.models.lrn import LRN

_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_KINDS = ((nn.Conv2d, "conv"), (nn.Linear, "fc"), (_POOLS, "pool"), (LRN, "norm"))


@dataclass
class LayerRow:
    """One row: a conv, pool, LRN or fully-connected layer."""

    name: str
    kind: str
    input: str  # HxW of the input (or the number of inputs of an fc layer)
    channels: int  # input channels (input features for fc)
    kernel: str
    padding: str
    stride: str
    output: str
    output_shape: list[int]
    weights: int
    biases: int
    params: int
    macs: int


def _pair(value) -> str:
    value = value if isinstance(value, tuple) else (value, value)
    return str(value[0]) if value[0] == value[1] else "x".join(map(str, value))


def _hw(shape: torch.Size) -> str:
    return f"{shape[-2]}x{shape[-1]}" if len(shape) == 4 else str(shape[-1])


def _row(name: str, kind: str, module: nn.Module, inp: torch.Size, out: torch.Size) -> LayerRow:
    weights = module.weight.numel() if getattr(module, "weight", None) is not None else 0
    biases = module.bias.numel() if getattr(module, "bias", None) is not None else 0
    output = f"{out[-2]}x{out[-1]}x{out[1]}" if len(out) == 4 else str(out[-1])
    kernel, padding, stride, macs = "-", "-", "-", 0
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        groups, cin, cout = module.groups, module.in_channels, module.out_channels
        per_group = f"({kh}x{kw}x{cin // groups})"
        kernel = (
            f"{per_group} x {cout}" if groups == 1 else f"{per_group} x {cout // groups} x {groups}"
        )
        padding, stride = _pair(module.padding), _pair(module.stride)
        macs = out[-2] * out[-1] * cout * kh * kw * (cin // groups)
    elif isinstance(module, nn.Linear):
        macs = module.in_features * module.out_features
    elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        kind_name = "max" if isinstance(module, nn.MaxPool2d) else "avg"
        kernel = f"{_pair(module.kernel_size)} {kind_name}"
        padding, stride = _pair(module.padding), _pair(module.stride)
    elif isinstance(module, nn.AdaptiveAvgPool2d):
        kernel = f"adaptive avg to {_pair(module.output_size)}"
    elif isinstance(module, LRN):
        kernel = f"n={module.size}" + (f" per tower ({module.groups})" if module.groups > 1 else "")
    channels = inp[1] if len(inp) == 4 else inp[-1]
    return LayerRow(
        name, kind, _hw(inp), int(channels), kernel, padding, stride, output,
        [int(s) for s in out[1:]], weights, biases, weights + biases, int(macs),
    )  # fmt: skip


def layer_table(model: nn.Module, input_size: int | None = None) -> list[LayerRow]:
    """Run one (1, C, S, S) zero image through `model` and describe each layer in call order."""
    size = input_size or model.input_size
    calls: list[tuple[nn.Module, torch.Size, torch.Size]] = []
    kinds = {}
    for _, module in model.named_modules():
        for types, kind in _KINDS:
            if isinstance(module, types):
                kinds[module] = kind
    hooks = [
        m.register_forward_hook(lambda mod, i, o: calls.append((mod, i[0].shape, o.shape)))
        for m in kinds
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            device = next(model.parameters()).device
            model(torch.zeros(1, model.in_channels, size, size, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    names = {m: n.rsplit(".", 1)[-1] for n, m in model.named_modules()}
    counters = {"conv": 0, "pool": 0, "norm": 0, "fc": 0}
    rows = []
    for module, inp, out in calls:
        kind = kinds[module]
        counters[kind] += 1
        if kind == "fc" and counters["fc"] == 1:
            counters["fc"] = counters["conv"] + 1  # fc layers continue the numbering: fc6
        name = names[module]
        if not name or name.isdigit():
            name = f"{kind}{counters[kind]}"
        rows.append(_row(name, kind, module, inp, out))
    return rows


def summary_dict(model: nn.Module, input_size: int | None = None) -> dict:
    """The JSON form: model, input_size, layers, total_params, total_macs."""
    rows = layer_table(model, input_size)
    return {
        "model": model.config["name"],
        "input_size": input_size or model.input_size,
        "layers": [asdict(r) for r in rows],
        "total_params": sum(p.numel() for p in model.parameters()),
        "total_macs": sum(r.macs for r in rows),
    }


_COLUMNS = [
    ("Layer", "name"), ("Input", "input"), ("#Channels", "channels"), ("Kernel", "kernel"),
    ("Padding", "padding"), ("Stride", "stride"), ("Output", "output"),
    ("#Weights", "weights"), ("#Biases", "biases"), ("#Params", "params"),
    ("Mult-adds", "macs"),
]  # fmt: skip


def format_table(summary: dict, markdown: bool = False) -> str:
    """The table for people: aligned text, or a Markdown table."""

    def cell(row: dict, key: str) -> str:
        value = row[key]
        if key in ("channels",) and row["kind"] in ("pool", "norm"):
            return "-"
        return f"{value:,}" if isinstance(value, int) else str(value)

    header = [title for title, _ in _COLUMNS]
    body = [[cell(r, key) for _, key in _COLUMNS] for r in summary["layers"]]
    total = ["Total", "", "", "", "", "", "", "", "", f"{summary['total_params']:,}"]
    total.append(f"{summary['total_macs']:,}")
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        lines.append("| " + " | ".join(f"**{c}**" if c else "" for c in total) + " |")
        return "\n".join(lines)
    rows = [header, *body, total]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells))
    return "\n".join(lines)

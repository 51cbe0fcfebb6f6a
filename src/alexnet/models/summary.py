"""The per-layer table, measured from the model object: shapes from a hooked forward pass,
weights, multiply-adds and receptive fields from the layers. A layer of kernel k, stride s,
padding p and dilation d maps (receptive field, jump, start) to (rf + (k - 1) d jump, jump s,
start + ((k - 1) d / 2 - p) jump); a fully-connected layer sees the whole image.
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
    """One row: a conv, pool, LRN or fully-connected layer (the JSON's "layers")."""

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
    receptive_field: int  # input pixels one output sees along a side (the input size for fc)
    jump: int  # input pixels between neighbouring outputs (0 for fc: one position)
    start: float  # input coordinate of the centre of output (0, 0)'s field


@dataclass(frozen=True)
class Field:
    """Where one layer's outputs look in the input (the module docstring's recurrence)."""

    receptive_field: int = 1
    jump: int = 1
    start: float = 0.5  # the centre of input pixel 0

    def after(self, module: nn.Module, inp: torch.Size, input_size: int) -> Field:
        """The field of `module`'s outputs, given this field of its input (N, C, H, W)."""
        if isinstance(module, nn.Linear):
            return Field(input_size, 0, input_size / 2)
        if isinstance(module, nn.AdaptiveAvgPool2d):  # windows of side ceil(H / out)
            out = _first(module.output_size)
            k, s, p, d = -(-inp[-2] // out), inp[-2] // out, 0, 1
        elif isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p = (_first(getattr(module, n)) for n in ("kernel_size", "stride", "padding"))
            d = _first(getattr(module, "dilation", 1))
        else:  # ReLU, LRN: one output per input
            return self
        return Field(
            self.receptive_field + (k - 1) * d * self.jump,
            self.jump * s,
            self.start + ((k - 1) * d / 2 - p) * self.jump,
        )

    def box(self, y: int, x: int, input_size: int) -> list[int]:
        """[x0, y0, x1, y1] of output (y, x)'s field in the input, clipped to the image."""
        half = self.receptive_field / 2

        def span(i: int) -> tuple[int, int]:
            centre = self.start + i * self.jump
            return max(0, round(centre - half)), min(input_size, round(centre + half))

        (x0, x1), (y0, y1) = span(x), span(y)
        return [x0, y0, x1, y1]


def layer_kind(module: nn.Module) -> str | None:
    """ "conv", "pool", "norm" or "fc" for a layer the table lists, else None."""
    return next((kind for types, kind in _KINDS if isinstance(module, types)), None)


def _first(value) -> int:
    return int(value[0] if isinstance(value, tuple) else value)


def _pair(value) -> str:
    value = value if isinstance(value, tuple) else (value, value)
    return str(value[0]) if value[0] == value[1] else "x".join(map(str, value))


def _row(
    name: str, kind: str, module: nn.Module, inp: torch.Size, out: torch.Size, field: Field
) -> LayerRow:
    weights = module.weight.numel() if getattr(module, "weight", None) is not None else 0
    biases = module.bias.numel() if getattr(module, "bias", None) is not None else 0
    output = f"{out[-2]}x{out[-1]}x{out[1]}" if len(out) == 4 else str(out[-1])
    kernel, padding, stride, macs = "-", "-", "-", 0
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        groups, cin, cout = module.groups, module.in_channels, module.out_channels
        kernel = f"({kh}x{kw}x{cin // groups}) x {cout // groups}"
        kernel += f" x {groups}" if groups > 1 else ""
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
    size, channels = (f"{inp[-2]}x{inp[-1]}", inp[1]) if len(inp) == 4 else (str(inp[-1]), inp[-1])
    return LayerRow(
        name, kind, size, int(channels), kernel, padding, stride, output,
        [int(s) for s in out[1:]], weights, biases, weights + biases, int(macs),
        field.receptive_field, field.jump, field.start,
    )  # fmt: skip


Call = tuple[nn.Module, torch.Size, torch.Size]  # (module, input shape, output shape)


def trace(model: nn.Module, modules: list[nn.Module], size: int) -> list[Call]:
    """The calls of `modules` (hooked) while one (1, C, size, size) zero image runs through
    `model` in eval mode, in call order; the model's mode is restored."""
    calls: list[Call] = []
    hooks = [
        m.register_forward_hook(lambda mod, i, o: calls.append((mod, i[0].shape, o.shape)))
        for m in modules
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
    return calls


def layer_table(
    model: nn.Module, input_size: int | None = None, calls: list[Call] | None = None
) -> list[LayerRow]:
    """Describe each layer of `model` in call order, from one traced zero image (`calls`: a
    trace of at least its layer modules, when the caller has one)."""
    size = input_size or model.input_size
    kinds = {m: layer_kind(m) for _, m in model.named_modules() if layer_kind(m)}
    calls = [c for c in (calls or trace(model, list(kinds), size)) if c[0] in kinds]
    names = {m: n.rsplit(".", 1)[-1] for n, m in model.named_modules()}
    counters = {"conv": 0, "pool": 0, "norm": 0, "fc": 0}
    rows, field = [], Field()
    for module, inp, out in calls:
        field = field.after(module, inp, size)
        kind = kinds[module]
        counters[kind] += 1
        if kind == "fc" and counters["fc"] == 1:
            counters["fc"] = counters["conv"] + 1  # fc layers continue the numbering: fc6
        name = names[module]
        if not name or name.isdigit():
            name = f"{kind}{counters[kind]}"
        rows.append(_row(name, kind, module, inp, out, field))
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
    ("Mult-adds", "macs"), ("RF", "receptive_field"), ("Jump", "jump"),
]  # fmt: skip


def format_table(summary: dict, markdown: bool = False) -> str:
    """The table for people: aligned text, or a Markdown table."""

    def cell(row: dict, key: str) -> str:
        value = row[key]
        if key == "channels" and row["kind"] in ("pool", "norm"):
            return "-"
        return f"{value:,}" if isinstance(value, int) else str(value)

    header = [title for title, _ in _COLUMNS]
    body = [[cell(r, key) for _, key in _COLUMNS] for r in summary["layers"]]
    total = ["Total", *[""] * 8, f"{summary['total_params']:,}", f"{summary['total_macs']:,}"]
    total += ["", ""]
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

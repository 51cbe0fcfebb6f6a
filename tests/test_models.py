"""The model family: shapes, parameter counts from the paper's arithmetic, init, variants."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import alexnet
from alexnet.errors import UserError
from alexnet.models.common import AlexNetModel
from alexnet.models.lrn import LRN
from alexnet.models.summary import layer_table


def conv_out(size: int, k: int, stride: int = 1, pad: int = 0) -> int:
    return (size + 2 * pad - k) // stride + 1


@pytest.mark.parametrize("input_size", [224, 227])
def test_paper_shapes_after_every_layer(input_size):
    pad = 2 if input_size == 224 else 0
    s1 = conv_out(input_size, 11, 4, pad)
    p1 = conv_out(s1, 3, 2)
    p2 = conv_out(conv_out(p1, 5, 1, 2), 3, 2)
    p5 = conv_out(p2, 3, 2)
    expected = {
        "conv1": [96, s1, s1], "norm1": [96, s1, s1], "pool1": [96, p1, p1],
        "conv2": [256, p1, p1], "norm2": [256, p1, p1], "pool2": [256, p2, p2],
        "conv3": [384, p2, p2], "conv4": [384, p2, p2], "conv5": [256, p2, p2],
        "pool5": [256, p5, p5], "fc6": [4096], "fc7": [4096], "fc8": [1000],
    }  # fmt: skip
    assert (s1, p1, p2, p5) == (55, 27, 13, 6)
    model = alexnet.get_model("paper", input_size=input_size)
    rows = layer_table(model)
    assert {r.name: r.output_shape for r in rows} == expected


def paper_param_count(
    num_classes=1000, towers=2, widths=(96, 256, 384, 384, 256), remove=None
) -> int:
    """The paper's architecture table, by hand: weights + biases of every layer.

    conv2, conv4 and conv5 read only their tower's maps; `remove` drops one conv layer and the
    next reads the maps before it.
    """
    g = towers
    kernels, grouped = (11, 5, 3, 3, 3), (1, g, 1, g, g)
    total, cin = 0, 3
    for i, (cout, k, groups) in enumerate(zip(widths, kernels, grouped), start=1):
        if remove == f"conv{i}":
            continue
        total += cin // groups * k * k * cout + cout
        cin = cout
    total += widths[4] * 36 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * num_classes + num_classes
    return total


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts():
    assert paper_param_count() == 60_965_224  # the paper's number (the seed's table says 608)
    assert count(alexnet.get_model("paper")) == paper_param_count()
    assert count(alexnet.get_model("paper", towers=1)) == paper_param_count(towers=1)
    assert count(alexnet.get_model("paper", num_classes=10)) == paper_param_count(10)
    assert count(alexnet.get_model("seed")) == paper_param_count(towers=1) == 62_378_344
    assert count(alexnet.get_model("torchvision")) == count(torchvision.models.alexnet())


README = Path(__file__).resolve().parents[1] / "README.md"
README_MODELS = "| name | what | params (1000 classes) |"


def readme_param_counts(text: str) -> dict[str, tuple[int, int]]:
    """The README's model table: name -> (parameters it states, classes they are for: 1000,
    or the row's own "(N classes)")."""
    assert README_MODELS in text, "the README has no model table"
    rows = {}
    for line in text.split(README_MODELS, 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        row = re.fullmatch(r"\| `(\w+)` \|.*\| ([\d,]+)(?: \((\d+) classes\))? \|", line)
        assert row, f"unreadable README model row: {line}"
        rows[row[1]] = (int(row[2].replace(",", "")), int(row[3] or 1000))
    return rows


def test_readme_parameter_counts_are_the_built_models():
    rows = readme_param_counts(README.read_text())
    assert list(rows) == alexnet.list_models()
    assert rows["small"][1] == 10 and {c for n, (_, c) in rows.items() if n != "small"} == {1000}
    for name, (params, classes) in rows.items():
        assert count(alexnet.get_model(name, num_classes=classes)) == params, name


def test_paper_init_statistics_and_bias_constants():
    torch.manual_seed(0)
    model = alexnet.get_model("paper")
    for name, layer in model.named_layers().items():
        w = layer.weight.detach()
        assert abs(w.mean().item()) < 1e-3, name
        assert w.std().item() == pytest.approx(0.01, rel=0.05), name
        want = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(layer.bias == want), name
    caffe = alexnet.get_model("paper", init="caffe").named_layers()
    assert torch.all(caffe["conv2"].bias == 0.1) and torch.all(caffe["conv1"].bias == 0)
    assert caffe["fc6"].weight.std().item() == pytest.approx(0.005, rel=0.05)
    kaiming = alexnet.get_model("paper", init="kaiming").named_layers()
    fan_out = 96 * 11 * 11
    assert kaiming["conv1"].weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)
    assert torch.all(kaiming["conv2"].bias == 0)


def test_paper_options_switch_each_feature():
    base = alexnet.get_model("paper")
    assert sum(isinstance(m, LRN) for m in base.modules()) == 2
    assert all(m.groups == 2 for m in base.modules() if isinstance(m, LRN))
    no_lrn = alexnet.get_model("paper", lrn=False)
    assert not any(isinstance(m, LRN) for m in no_lrn.modules())
    pools = [m for m in alexnet.get_model("paper").modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 2)] * 3
    flat = alexnet.get_model("paper", pool="nonoverlap")
    pools = [m for m in flat.modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(2, 2)] * 3
    assert flat(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
    groups = [m.groups for m in base.modules() if isinstance(m, nn.Conv2d)]
    assert groups == [1, 2, 1, 2, 2]
    tanh = alexnet.get_model("paper", activation="tanh")
    assert any(isinstance(m, nn.Tanh) for m in tanh.modules())
    assert not any(isinstance(m, nn.ReLU) for m in tanh.modules())
    assert [m.p for m in base.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    no_drop = alexnet.get_model("paper", dropout=0.0).train()
    x = torch.randn(2, 3, 224, 224)
    assert torch.equal(no_drop(x), no_drop(x))  # no randomness left in training mode


def test_towers_are_independent_in_grouped_layers():
    """conv2's tower-A outputs must not depend on tower-B maps (paper §3.2)."""
    model = alexnet.get_model("paper").eval()
    conv2 = model.features.conv2
    x = torch.randn(1, 96, 27, 27)
    y = conv2(x)
    x2 = x.clone()
    x2[:, 48:] = torch.randn(1, 48, 27, 27)  # change tower B's input only
    y2 = conv2(x2)
    assert torch.equal(y[:, :128], y2[:, :128])
    assert not torch.equal(y[:, 128:], y2[:, 128:])


def test_torchvision_state_dict_loads_strict_and_matches():
    torch.manual_seed(0)
    theirs = torchvision.models.alexnet(weights=None).eval()
    ours = alexnet.get_model("torchvision").eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    assert torch.equal(ours(x), theirs(x))


class SeedCode(nn.Module):
    """The seed note's PyTorch code, copied verbatim as the reference."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


def test_seed_model_is_the_seed_code():
    reference = SeedCode().eval()
    ours = alexnet.get_model("seed").eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    assert torch.equal(ours(x), reference(x))


def example_input(model, n: int = 2) -> torch.Tensor:
    return torch.randn(n, model.in_channels, model.input_size, model.input_size)


def _lrn_torch(t: torch.Tensor, towers: int, alpha: float = 5e-4, k: float = 2.0):
    """torch's LRN divides alpha by the size: the paper's alpha 1e-4 is 5e-4 there."""
    return torch.cat([F.local_response_norm(p, 5, alpha, 0.75, k) for p in t.chunk(towers, 1)], 1)


def _small_penultimate(model, x):
    f = model.features
    t = _lrn_torch(F.max_pool2d(F.relu(f.conv1(x)), 3, 2), 1)
    t = _lrn_torch(F.max_pool2d(F.relu(f.conv2(t)), 3, 2), 1)
    return F.max_pool2d(F.relu(f.conv3(t)), 3, 2).flatten(1)


def _reference_penultimate(name: str, model, x):
    """The penultimate layer computed by independent code: torch's functions or torchvision."""
    if name == "paper":
        return _paper_from_torch_ops(model, x, upto_fc7=True)
    if name == "seed":
        reference = SeedCode(model.num_classes).eval()
        reference.load_state_dict(model.state_dict())
        return reference.classifier[:6](reference.features(x).flatten(1))
    if name == "torchvision":
        reference = torchvision.models.alexnet(num_classes=model.num_classes).eval()
        reference.load_state_dict(model.state_dict())
        return reference.classifier[:6](reference.avgpool(reference.features(x)).flatten(1))
    return _small_penultimate(model, x)


@pytest.mark.parametrize("name", alexnet.list_models())
def test_penultimate_layer_equals_an_independent_reference(name):
    torch.manual_seed(0)
    model = alexnet.get_model(name, num_classes=7).eval()
    x = example_input(model) * 2
    with torch.no_grad():
        feats = model.forward_penultimate(x)
        assert feats.shape == (2, model.penultimate_dim)
        want = {"paper": 4096, "seed": 4096, "torchvision": 4096, "small": 64 * 3 * 3}[name]
        assert model.penultimate_dim == want
        assert torch.allclose(feats, _reference_penultimate(name, model, x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", alexnet.list_models())
def test_every_model_has_the_interface(name):
    model = alexnet.get_model(name, num_classes=5)
    assert isinstance(model, AlexNetModel)
    expected = {"paper": (224, 3), "seed": (224, 3), "torchvision": (224, 3), "small": (32, 3)}
    assert (model.input_size, model.in_channels) == expected[name]
    assert model.num_classes == 5 and model.config["name"] == name
    assert model(example_input(model)).shape == (2, 5)
    assert model.penultimate_name == ("pool3 (flattened)" if name == "small" else "fc7")


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_small_family(size, channels):
    model = alexnet.get_model("small", in_channels=channels, input_size=size)
    assert model.num_classes == 10
    x = torch.randn(4, channels, size, size)
    assert model(x).shape == (4, 10)
    assert sum(isinstance(m, LRN) for m in model.modules()) == 2
    tanh = alexnet.get_model("small", activation="tanh", lrn=False, hidden=64, dropout=0.5)
    assert tanh(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert tanh.forward_penultimate(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    assert (tanh.penultimate_dim, tanh.penultimate_name) == (64, "fc4")


@pytest.mark.parametrize("name", alexnet.list_models())
def test_config_holds_every_option_and_rebuilds_the_model(name):
    """The config names each option of the class (its options dataclass's fields, or its
    signature's keywords) with its value."""
    model = alexnet.get_model(name, num_classes=5, dropout=0.25)
    options_type = getattr(type(model), "Options", None)
    if options_type is not None:
        defaults = {f.name: f.default for f in dataclasses.fields(options_type)}
    else:
        signature = inspect.signature(type(model).__init__).parameters
        defaults = {k: p.default for k, p in signature.items() if k != "self"}
    defaults.update(num_classes=5, dropout=0.25)
    options = model.config["options"]
    assert options.keys() == defaults.keys()
    for key, value in defaults.items():
        assert options[key] == (list(value) if isinstance(value, tuple) else value), key
    again = alexnet.get_model(model.config["name"], **options).eval()
    again.load_state_dict(model.state_dict(), strict=True)
    x = example_input(model)
    with torch.no_grad():
        assert torch.equal(again(x), model.eval()(x))


def test_bad_input_is_named():
    model = alexnet.get_model("paper")
    with pytest.raises(UserError, match=r"\(N, 3, 224, 224\).*\(1, 3, 200, 200\)"):
        model(torch.zeros(1, 3, 200, 200))
    with pytest.raises(UserError, match="expects input of shape"):
        model(torch.zeros(1, 1, 224, 224))
    with pytest.raises(UserError, match="paper, seed, torchvision, small"):
        alexnet.get_model("resnet")
    with pytest.raises(UserError, match="input_size"):
        alexnet.get_model("paper", input_size=200)
    with pytest.raises(UserError, match="paper"):
        alexnet.get_model("paper", colour=True)


def _paper_from_torch_ops(model, x, upto_fc7=False, winners=None):
    """The paper's network written with torch's own functional layers (an independent path).

    winners: None (each max-pool picks its own maxima) or the flat indices (N, C, OH, OW) that
    pool1, pool2 and pool5 are to take, as `_pool_winners` returns them: two float32 paths round
    differently, and a window whose two largest values lie within that rounding may pick either,
    which moves a gradient to another place. A comparison of gradients follows one choice."""
    f = model.features
    opts = model.config["options"]
    towers, k = opts["towers"], opts["lrn_k"]
    alpha = 1e-4 if opts["lrn_alpha_convention"] == "per_size" else 5e-4  # torch divides by 5
    taken = iter(winners or [])

    def conv(layer, t):
        return F.conv2d(t, layer.weight, layer.bias, layer.stride, layer.padding, 1, layer.groups)

    def pool(t):
        if winners is None:
            return F.max_pool2d(t, 3, 2)
        index = next(taken)
        return t.flatten(2).gather(2, index.flatten(2)).view(index.shape)

    t = pool(_lrn_torch(F.relu(conv(f.conv1, x)), towers, alpha, k))
    t = pool(_lrn_torch(F.relu(conv(f.conv2, t)), towers, alpha, k))
    t = F.relu(conv(f.conv5, F.relu(conv(f.conv4, F.relu(conv(f.conv3, t))))))
    t = pool(t).flatten(1)
    c = model.classifier
    t = F.relu(F.linear(F.relu(F.linear(t, c.fc6.weight, c.fc6.bias)), c.fc7.weight, c.fc7.bias))
    return t if upto_fc7 else F.linear(t, model.fc8.weight, model.fc8.bias)


def _pool_winners(model, x) -> list[torch.Tensor]:
    """The flat index (N, C, OH, OW) of the value each of the model's max-pools takes, in order.

    Read with hooks on the pools (which run them apart from LRN: bitwise the fused kernel's
    result, test_fused.py): each pool's output must be its input at these places, i.e. the pool
    took a largest value of its window, the one torch's tie rule names."""
    pools = [m for m in model.features if isinstance(m, torch.nn.MaxPool2d)]
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [p.register_forward_hook(lambda m, i, o: seen.append((i[0], o))) for p in pools]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    winners = []
    for (inp, out), pool in zip(seen, pools):
        _, index = F.max_pool2d(inp, pool.kernel_size, pool.stride, return_indices=True)
        assert torch.equal(out, inp.flatten(2).gather(2, index.flatten(2)).view(index.shape))
        winners.append(index)
    return winners


@pytest.mark.parametrize(
    "fmt,lrn",
    [
        (torch.contiguous_format, {}),
        (torch.channels_last, {}),
        # Caffe's bvlc_alexnet LRN: k=1, alpha divided by n
        (torch.contiguous_format, {"lrn_k": 1.0, "lrn_alpha_convention": "per_size"}),
    ],
)
def test_paper_model_equals_torch_ops_in_eval_and_training(fmt, lrn):
    """LRN and max-pool kernels inside the model: logits and gradients as torch's layers give."""
    torch.manual_seed(11)
    model = alexnet.get_model("paper", num_classes=10, dropout=0.0, init="kaiming", **lrn)
    model = model.to(memory_format=fmt)
    x = (torch.randn(2, 3, 224, 224) * 2).contiguous(memory_format=fmt)
    with torch.inference_mode():
        reference = _paper_from_torch_ops(model, x)
        assert torch.allclose(model.eval()(x), reference, rtol=1e-4, atol=1e-4)
    model.train()
    winners = _pool_winners(model, x)
    loss = model(x).logsumexp(1).sum()
    ours = torch.autograd.grad(loss, [model.features.conv1.weight, model.features.conv2.bias])
    loss = _paper_from_torch_ops(model, x, winners=winners).logsumexp(1).sum()
    theirs = torch.autograd.grad(loss, [model.features.conv1.weight, model.features.conv2.bias])
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5 * b.abs().max().item())

"""Model options for the paper's experiments: depth (§7), towers (§3.2), widths, LRN (§3.3)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from data_helpers import synthetic_data
from test_models import count, paper_param_count
from torch import nn

import alexnet
from alexnet import cli
from alexnet.errors import UserError
from alexnet.models.alexnet import MIDDLE_CONVS, ONE_GPU_OPTIONS
from alexnet.models.common import one_tower_widths
from alexnet.models.lrn import LRN
from alexnet.models.registry import option_defaults
from alexnet.models.summary import layer_table
from alexnet.models.variants import SmallCNN, SmallOptions
from alexnet.train import fit, make_config


def small_param_count(widths=(32, 32, 64), towers=1, remove=None, channels=3, classes=10) -> int:
    """Three 5x5 convs (conv2, conv3 grouped by `towers`), pools 32 -> 15 -> 7 -> 3, one fc."""
    total, cin = 0, channels
    for i, cout in enumerate(widths, start=1):
        if remove == f"conv{i}":
            continue
        groups = towers if i > 1 else 1
        total += cin // groups * 25 * cout + cout
        cin = cout
    return total + cin * 9 * classes + classes


@pytest.mark.parametrize("removed", MIDDLE_CONVS)
def test_paper_without_a_middle_conv_layer(removed):
    torch.manual_seed(0)
    model = alexnet.get_model("paper", num_classes=10, remove_conv=removed, init="kaiming")
    assert count(model) == paper_param_count(10, remove=removed)
    convs = [n for n, m in model.features.named_children() if isinstance(m, nn.Conv2d)]
    assert convs == [c for c in ("conv1", "conv2", "conv3", "conv4", "conv5") if c != removed]
    rows = {r.name: r.output_shape for r in layer_table(model)}
    assert rows["pool5"] == [256, 6, 6] and rows["pool2"] == [
        256 if removed != "conv2" else 96,
        13,
        13,
    ]
    after = {"conv2": "conv3", "conv3": "conv4", "conv4": "conv5"}[removed]
    before_width = {"conv2": 96, "conv3": 256, "conv4": 384}[removed]
    assert getattr(model.features, after).in_channels == before_width  # reads the remaining maps
    x = torch.randn(2, 3, 224, 224)
    out = model(x)
    assert out.shape == (2, 10)
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert model.config["options"]["remove_conv"] == removed


@pytest.mark.parametrize("removed", [None, "conv2"])
@pytest.mark.parametrize("towers", [1, 2])
def test_small_depth_and_towers_param_counts(removed, towers):
    model = alexnet.get_model("small", towers=towers, remove_conv=removed)
    assert count(model) == small_param_count(towers=towers, remove=removed)
    x = torch.randn(3, 3, 32, 32)
    out = model(x)
    assert out.shape == (3, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_only_middle_layers_can_be_removed():
    for name, bad in (
        ("paper", "conv1"),
        ("paper", "conv5"),
        ("small", "conv1"),
        ("small", "conv3"),
    ):
        with pytest.raises(UserError, match="remove_conv"):
            alexnet.get_model(name, remove_conv=bad)


def test_small_towers_are_grouped_with_lrn_per_tower():
    model = alexnet.get_model("small", towers=2, widths=(32, 48, 64))
    f = model.features
    assert f.conv1.weight.shape == (32, 3, 5, 5)  # the first layer reads the image
    assert f.conv2.weight.shape == (48, 16, 5, 5)  # 24 kernels per tower, each reading 16 maps
    assert f.conv3.weight.shape == (64, 24, 5, 5)
    assert [m.groups for m in model.modules() if isinstance(m, LRN)] == [2, 2]
    assert model.config["options"]["towers"] == 2


def test_small_tower_conv_equals_block_diagonal_dense_conv():
    torch.manual_seed(1)
    grouped = alexnet.get_model("small", towers=2).features.conv2
    dense = nn.Conv2d(32, 32, 5, padding=2)
    with torch.no_grad():
        dense.weight.zero_()
        dense.weight[:16, :16] = grouped.weight[:16]  # tower A reads maps 0..15
        dense.weight[16:, 16:] = grouped.weight[16:]  # tower B reads maps 16..31
        dense.bias.copy_(grouped.bias)
    x = torch.randn(2, 32, 15, 15)
    assert torch.allclose(grouped(x), dense(x), atol=1e-5)


def test_one_tower_comparison_nets_have_about_the_same_parameters():
    """§3.2 footnote: the one-GPU net halves every conv but the last, fc layers unchanged."""
    assert one_tower_widths((96, 256, 384, 384, 256)) == (48, 128, 192, 192, 256)
    assert tuple(ONE_GPU_OPTIONS["widths"]) == (48, 128, 192, 192, 256)
    one = alexnet.get_model("paper", **ONE_GPU_OPTIONS)
    expected = paper_param_count(towers=1, widths=(48, 128, 192, 192, 256))
    assert count(one) == expected
    two = paper_param_count()
    assert 0.97 < count(one) / two < 1.0
    assert all(m.groups == 1 for m in one.modules() if isinstance(m, (nn.Conv2d, LRN)))
    assert one(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    small = alexnet.get_model("small", towers=1, widths=one_tower_widths((32, 32, 64)))
    assert count(small) == small_param_count(widths=(16, 16, 64))


def test_paper_widths_are_checked():
    with pytest.raises(UserError, match="towers=2"):
        alexnet.get_model("paper", widths=(95, 256, 384, 384, 256))
    with pytest.raises(UserError, match="5 positive"):
        alexnet.get_model("paper", widths=(96, 256, 384))


def test_paper_lrn_options_reach_every_lrn_layer():
    model = alexnet.get_model("paper", lrn_k=1.0, lrn_alpha_convention="per_size")
    norms = [m for m in model.modules() if isinstance(m, LRN)]
    assert len(norms) == 2
    assert all(m.k == 1.0 and m.alpha == pytest.approx(1e-4 / 5) for m in norms)
    with pytest.raises(UserError, match="lrn_alpha_convention"):
        alexnet.get_model("paper", lrn_alpha_convention="caffe")
    x = torch.randn(1, 8, 3, 3) * 100
    expected = F.local_response_norm(x, 5, 1e-4, 0.75, 1.0)
    assert torch.allclose(LRN(k=1.0, alpha_convention="per_size")(x), expected)


def test_lrn_scope_all_equals_one_tower_with_block_diagonal_convs():
    """lrn_scope="all" (Caffe's bvlc_alexnet): the towers' grouped convs, but LRN windows that
    cross the towers' boundary. Independent reference: the one-tower net whose conv2/4/5 hold
    the grouped kernels block-diagonally (zeros across towers), where LRN sees all maps."""
    torch.manual_seed(0)
    opts = dict(num_classes=10, input_size=227, lrn_k=1.0, lrn_alpha_convention="per_size")
    caffe = alexnet.get_model("paper", lrn_scope="all", **opts).eval()
    dense = alexnet.get_model("paper", towers=1, **opts).eval()
    assert caffe.features.norm1.groups == 1 and caffe.features.conv2.groups == 2
    state = {}
    for key, value in caffe.state_dict().items():
        conv = key.split(".")[1] if key.startswith("features.") else ""
        if conv in ("conv2", "conv4", "conv5") and key.endswith("weight"):
            out, inp = value.shape[:2]
            block = torch.zeros(out, 2 * inp, *value.shape[2:])
            block[: out // 2, :inp] = value[: out // 2]
            block[out // 2 :, inp:] = value[out // 2 :]
            value = block
        state[key] = value
    dense.load_state_dict(state)
    x = torch.randn(2, 3, 227, 227) * 50
    torch.testing.assert_close(caffe(x), dense(x), rtol=1e-4, atol=1e-4)
    # the scope matters exactly at the towers' boundary: norm1's maps 46..49 (window n = 5)
    per_tower = alexnet.get_model("paper", **opts).eval()
    per_tower.load_state_dict(caffe.state_dict())
    with torch.no_grad():
        a, b = caffe.features[:3](x), per_tower.features[:3](x)  # conv1, act1, norm1
    differs = (a - b).abs().amax(dim=(0, 2, 3)) > 0
    assert differs.nonzero().flatten().tolist() == [46, 47, 48, 49]


# (model, option, a bad value, what the message must say the option may be): every option of
# every model has at least one (checked below).
BAD_OPTIONS = [
    ("paper", "num_classes", 0, "an integer >= 1"),
    ("paper", "input_size", 200, "224, 227"),
    ("paper", "lrn", "no", "True, False"),
    ("paper", "pool", "avg", "overlap, nonoverlap"),
    ("paper", "dropout", 2, "[0, 1)"),
    ("paper", "dropout", 1.0, "[0, 1)"),
    ("paper", "dropout", "half", "[0, 1)"),
    ("paper", "towers", 3, "1, 2"),
    ("paper", "activation", "gelu", "relu, tanh"),
    ("paper", "init", "xavier", "paper, caffe, kaiming, torch"),
    ("paper", "widths", (96, 256), "5 positive numbers"),
    ("paper", "widths", ["a"] * 5, "5 positive numbers"),
    ("paper", "remove_conv", "conv5", "None, conv2, conv3, conv4"),
    ("paper", "lrn_k", -1, "> 0"),
    ("paper", "lrn_k", 0, "> 0"),
    ("paper", "lrn_k", "two", "> 0"),
    ("paper", "lrn_alpha_convention", "caffe", "paper, per_size"),
    ("paper", "lrn_scope", "gpu", "tower, all"),
    ("seed", "num_classes", -3, "an integer >= 1"),
    ("seed", "dropout", 2, "[0, 1)"),
    ("torchvision", "num_classes", 2.5, "an integer >= 1"),
    ("torchvision", "dropout", -0.1, "[0, 1)"),
    ("small", "num_classes", 0, "an integer >= 1"),
    ("small", "in_channels", 2, "1, 3"),
    ("small", "input_size", 224, "28, 32"),
    ("small", "widths", (32, 32), "3 positive numbers"),
    ("small", "widths", "abc", "3 positive numbers"),
    ("small", "lrn", 2, "True, False"),
    ("small", "pool", "max", "overlap, nonoverlap"),
    ("small", "activation", "sigmoid", "relu, tanh"),
    ("small", "hidden", -1, "an integer >= 0"),
    ("small", "hidden", 1.5, "an integer >= 0"),
    ("small", "dropout", 1.5, "[0, 1)"),  # refused even without a hidden layer to use it
    ("small", "batchnorm", "yes", "True, False"),
    ("small", "init", "caffe", "paper, torch"),
    ("small", "towers", 4, "1, 2"),
    ("small", "remove_conv", "conv3", "None, conv2"),
]


def test_every_option_of_every_model_has_a_bad_value_case():
    for name in alexnet.list_models():
        assert {o for m, o, *_ in BAD_OPTIONS if m == name} == set(option_defaults(name)), name


@pytest.mark.parametrize("name,option,value,allowed", BAD_OPTIONS)
def test_a_bad_option_is_one_line_naming_it_and_what_it_may_be(name, option, value, allowed):
    with pytest.raises(UserError) as info:
        alexnet.get_model(name, **{option: value})
    message = str(info.value)
    assert "\n" not in message and option in message and allowed in message, message
    assert message.startswith(f"model {name!r}: ")


def test_an_unknown_option_lists_the_known_ones():
    with pytest.raises(UserError, match=r"'small' has no option 'colour'; its options: num_cl"):
        alexnet.get_model("small", colour=True)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return synthetic_data(tmp_path_factory.mktemp("options") / "data", count=40)


@pytest.mark.parametrize(
    "model,options,words",
    [
        ("paper", {"dropout": 2}, "dropout=2 is not a number in [0, 1)"),
        ("paper", {"lrn_k": -1}, "lrn_k=-1 is not a finite number > 0"),
        ("small", {"dropout": 2}, "dropout=2 is not a number in [0, 1)"),
    ],
)
def test_train_with_a_bad_model_option_is_one_line(tiny_data, tmp_path, capsys, model,
                                                   options, words):  # fmt: skip
    argv = ["train", "--data", str(tiny_data), "--output-dir", str(tmp_path / "run"),
            "--model", model, "--model-options", json.dumps(options), "--epochs", "1",
            "--batch-size", "8", "--device", "cpu"]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"alexnet train: error: model {model!r}: {words}"), err


def test_fit_with_a_bad_model_option_raises_user_error(tiny_data, tmp_path):
    values = {"data": str(tiny_data), "output_dir": str(tmp_path), "epochs": 1, "batch_size": 8,
              "device": "cpu", "model_options": {"lrn_k": "x"}}  # fmt: skip
    cfg = make_config("paper", model="paper", **values)
    with pytest.raises(UserError, match="lrn_k='x' is not a finite number > 0"):
        fit(cfg)


# The small model's config as the code before `SmallOptions` stored it (its constructor's
# keywords in order, values as given, widths a list): weights saved then must load unchanged.
OLD_SMALL_DEFAULTS = {
    "num_classes": 10, "in_channels": 3, "input_size": 32, "widths": [32, 32, 64], "lrn": True,
    "pool": "overlap", "activation": "relu", "hidden": 0, "dropout": 0.0, "batchnorm": False,
    "init": "torch", "towers": 1, "remove_conv": None,
}  # fmt: skip


@pytest.mark.parametrize(
    "options,changed",
    [
        ({}, {}),
        # the fast recipe's options
        ({"batchnorm": True, "lrn": False, "pool": "nonoverlap", "hidden": 256},
         {"batchnorm": True, "lrn": False, "pool": "nonoverlap", "hidden": 256}),
        # Fashion-MNIST, two towers, the middle layer removed, widths as a tuple, an int dropout
        ({"num_classes": 4, "in_channels": 1, "input_size": 28, "widths": (16, 16, 64),
          "towers": 2, "remove_conv": "conv2", "dropout": 0, "activation": "tanh",
          "init": "paper"},
         {"num_classes": 4, "in_channels": 1, "input_size": 28, "widths": [16, 16, 64],
          "towers": 2, "remove_conv": "conv2", "dropout": 0, "activation": "tanh",
          "init": "paper"}),
        ({"hidden": 64, "dropout": 0.5, "widths": [48, 48, 96]},
         {"hidden": 64, "dropout": 0.5, "widths": [48, 48, 96]}),
    ],
)  # fmt: skip
def test_small_config_is_what_it_was_before_small_options(options, changed):
    expected = json.dumps({**OLD_SMALL_DEFAULTS, **changed})  # order and types too
    assert json.dumps(SmallOptions(**options).to_config()) == expected
    assert json.dumps(alexnet.get_model("small", **options).config["options"]) == expected


def test_small_options_keep_the_constructor_keywords_and_defaults():
    model = SmallCNN(num_classes=10, lrn=False, widths=[16, 16, 32], hidden=8)
    assert (
        model.config == alexnet.get_model("small", lrn=False, widths=(16, 16, 32), hidden=8).config
    )
    assert SmallCNN(5).num_classes == 5 and SmallCNN.Options is SmallOptions
    assert option_defaults("small") == OLD_SMALL_DEFAULTS
    with pytest.raises(dataclasses.FrozenInstanceError):
        SmallOptions().hidden = 3  # type: ignore[misc]

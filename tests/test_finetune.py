"""Fine-tuning (paper §6): a run that starts from trained weights, a re-made last layer, frozen
layers, a faster last layer; and the refusals around a training's start."""

from __future__ import annotations

import pytest
import torch
from train_helpers import run, weights, write_packed

from alexnet.errors import UserError
from alexnet.train import fit, make_config
from alexnet.train.finetune import freeze, param_groups
from alexnet.train.schedules import make_schedule

SMALL = {"hidden": 32, "dropout": 0.5, "widths": [8, 8, 16], "batchnorm": True}
QUICK = dict(device="cpu", workers=0, batch_size=16, seed=1)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """`small` trained for an epoch on 4 classes: the weights a fine-tuning starts from."""
    data = write_packed(tmp_path_factory.mktemp("four"), classes=4, seed=0)
    out = tmp_path_factory.mktemp("pre") / "run"
    cfg = make_config("fast", data=str(data), output_dir=str(out), epochs=1, **QUICK)
    cfg.model_options = SMALL
    result = fit(cfg)
    return result.weights


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    return write_packed(tmp_path_factory.mktemp("three"), classes=3, seed=5, n_train=96)


def _finetune(data, out, init_from, **overrides):
    values = dict(data=str(data), output_dir=str(out), init_from=str(init_from), epochs=2)
    return make_config("finetune", **{**values, **QUICK, **overrides})


def test_frozen_layers_are_bitwise_unchanged_and_the_head_is_remade(pretrained, three, tmp_path):
    cfg = _finetune(three, tmp_path / "ft", pretrained, freeze="features")
    assert (cfg.model, cfg.model_options["widths"]) == ("small", [8, 8, 16])  # the weights'
    result = fit(cfg)
    before, after = weights(pretrained), weights(result.weights)
    convs = [k for k in before if k.startswith("features.")]
    assert convs and all(torch.equal(before[k], after[k]) for k in convs)  # incl. BN statistics
    assert after["fc.weight"].shape[0] == 3 and before["fc.weight"].shape[0] == 4
    hidden = [k for k in before if k.startswith("hidden") or k.startswith("classifier")]
    trained = [k for k in after if not k.startswith("features.") and k in before]
    assert trained and any(not torch.equal(before[k], after[k]) for k in trained), hidden


def test_without_freeze_every_layer_learns(pretrained, three, tmp_path):
    result = fit(_finetune(three, tmp_path / "ft", pretrained, epochs=1))
    before, after = weights(pretrained), weights(result.weights)
    assert not torch.equal(before["features.conv1.weight"], after["features.conv1.weight"])


def test_freeze_names_layers_up_to_one_and_refuses_unknown_ones():
    from alexnet import get_model

    net = get_model("paper")
    assert freeze(net, "conv2") == ["conv1", "norm1", "pool1", "conv2"]
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {f"features.conv{i}.{t}" for i in (1, 2) for t in ("weight", "bias")}
    with pytest.raises(UserError, match="'fc9'.*conv1, norm1"):
        freeze(get_model("paper"), "fc9")
    tv = get_model("torchvision")
    freeze(tv, "features")
    assert [p.requires_grad for p in tv.features.parameters()] == [False] * 10
    assert all(p.requires_grad for p in tv.classifier.parameters())


def test_the_last_layer_learns_at_its_factor(pretrained, three, tmp_path):
    cfg = _finetune(three, tmp_path / "ft", pretrained, epochs=2, max_steps=3)
    fit(cfg)
    groups = torch.load(tmp_path / "ft" / "checkpoint.pt", weights_only=True)["optimizer"]
    body, head = groups["param_groups"]
    assert head["lr"] == pytest.approx(10 * body["lr"]) and body["lr"] > 0
    assert len(head["params"]) == 2  # fc's weight and bias
    from alexnet import get_model

    one = param_groups(get_model("small"), 1.0)
    assert len(one) == 1 and len(one[0]["params"]) == len(list(get_model("small").parameters()))


def test_a_resumed_finetuning_repeats_the_uninterrupted_one(pretrained, three, tmp_path):
    whole = fit(_finetune(three, tmp_path / "whole", pretrained, freeze="conv1"))
    fit(_finetune(three, tmp_path / "cut", pretrained, freeze="conv1", max_steps=4))
    again = fit(make_config(resume=str(tmp_path / "cut"), max_steps=0))
    a, b = weights(whole.weights), weights(again.weights)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_other_model_or_no_weights_is_one_line(pretrained, three, tmp_path):
    with pytest.raises(UserError, match="weights of model 'small', not model 'paper'"):
        _finetune(three, tmp_path / "x", pretrained, model="paper")
    with pytest.raises(UserError, match="give init_from"):
        fit(make_config("finetune", data=str(three), output_dir=str(tmp_path / "y")))


def test_warmup_is_shorter_than_the_run_or_refused(three, tmp_path):
    cfg = make_config("fast", data=str(three), output_dir=str(tmp_path), epochs=1)
    schedule, steps = make_schedule(cfg), 10
    assert schedule.lr(0, steps - 1, steps) < 1e-6 * cfg.lr  # ends decayed, not at the peak
    assert schedule.lr(0, 0, steps) == pytest.approx(cfg.lr * 0.1 / (1 / 6))  # 1/6 warm-up
    six = make_schedule(make_config("fast", data=str(three), output_dir=str(tmp_path)))
    assert six.warmup == 1.0  # the demo's 6 epochs: one epoch of warm-up
    with pytest.raises(UserError, match="warmup_epochs 2 is not shorter than epochs 2"):
        make_config("fast", data=str(three), output_dir=str(tmp_path), epochs=2, warmup_epochs=2)


def test_train_refuses_a_folder_of_other_files_and_says_the_cost(three, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"\xff\xd8 not really")
    args = ["train", "--data", str(three), "--recipe", "fast", "--model", "small", "--epochs", "1"]
    done = run([*args, "--output-dir", str(photos), "--batch-size", "8"])
    assert done.returncode == 2
    assert "not empty and not a run directory (it holds holiday.jpg)" in done.stderr
    assert sorted(p.name for p in photos.iterdir()) == ["holiday.jpg"]
    done = run([*args, "--output-dir", str(tmp_path / "run"), "--batch-size", "8"])
    assert done.returncode == 0, done.stderr
    assert "plan: 12 steps of 8 images, 6 to go" in done.stderr


def test_the_last_layer_is_remade_for_other_classes_of_the_same_number(pretrained, tmp_path):
    from alexnet.train.finetune import start_from
    from alexnet.weights.files import build_model, read

    before, meta = weights(pretrained), read(pretrained)[1]
    same = build_model(meta.model_config, 4)
    _, head = start_from(same, str(pretrained), ["class0", "class1", "class2", "class3"])
    assert head == [] and torch.equal(same.state_dict()["fc.weight"], before["fc.weight"])
    other = build_model(meta.model_config, 4)
    fresh = other.state_dict()["fc.weight"].clone()
    _, head = start_from(other, str(pretrained), ["sandal", "shirt", "sneaker", "bag"])
    assert head == ["fc.bias", "fc.weight"]
    assert torch.equal(other.state_dict()["fc.weight"], fresh)  # its own initialization
    conv = other.state_dict()["features.conv1.weight"]
    assert torch.equal(conv, before["features.conv1.weight"])  # the rest: the weights'

"""Each experiment of `alexnet reproduce` end to end on a tiny synthetic dataset with a tiny
budget: its files are written, `summary` is recomputable from `runs`, a rerun reuses every
finished run (no training), and variants paired by seed start from the same weights."""

from __future__ import annotations

import dataclasses
import io
import json
from types import SimpleNamespace

import pytest
import torch
from reproduce_tiny import shrink
from train_helpers import write_packed

from alexnet.data.packed import open_dataset
from alexnet.errors import UserError
from alexnet.experiments import ablations, depth, paper_net, relu_tanh, retrieval, runner, towers
from alexnet.experiments.result import summarize
from alexnet.experiments.runner import Context
from alexnet.train.inputs import plan_geometry
from alexnet.train.loop import build_model


@pytest.fixture(scope="module")
def gray(tmp_path_factory):
    return write_packed(tmp_path_factory.mktemp("gray"), n_train=64, n_val=32, gray=True,
                        classes=10)  # fmt: skip


@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    return write_packed(tmp_path_factory.mktemp("colour"), n_train=64, n_val=16, size=32)


@pytest.fixture
def tiny(monkeypatch):
    """Budgets of seconds: a few steps of batch 16 on 64 images; trainings counted."""
    shrink(monkeypatch.setattr, monkeypatch.setitem)
    calls, real = [], runner.fit
    monkeypatch.setattr(runner, "fit", lambda cfg: calls.append(cfg) or real(cfg))
    return calls


def _run(module, data, out, calls, seeds=2, family="small"):
    before = len(calls)
    ctx = Context(module.NAME, data, out, "quick", seeds, "cpu", log=io.StringIO(), family=family)
    runner.reproduce(ctx, module)
    return len(calls) - before, ctx


CASES = [
    (relu_tanh, "gray", ["fig1.png"], 2 * 2 + 2 * 2),  # sweep 2 rates x 2 activations + seeds
    (ablations, "gray", ["deltas.png"], 7 * 2),
    (depth, "gray", [], 2 * 2),
    (retrieval, "gray", ["fig4.png"], 2),
    (towers, "colour", ["scores.png", "kernels.png"], 2),
]


@pytest.mark.parametrize("module,data_name,pictures,trainings", CASES,
                         ids=[c[0].NAME for c in CASES])  # fmt: skip
def test_experiment_end_to_end(module, data_name, pictures, trainings, tiny, request, tmp_path):
    data = request.getfixturevalue(data_name)
    calls, ctx = _run(module, data, tmp_path, tiny)
    assert calls == trainings
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["experiment"] == module.NAME and result["budget"] == "quick"
    assert {
        "claim",
        "runs",
        "summary",
        "comparisons",
        "machine",
        "torch",
        "commit",
        "wall_s",
    } <= set(result)
    assert result["summary"] == json.loads(json.dumps(summarize(result["runs"])))
    assert {r["seed"] for r in result["runs"]} == {0, 1}
    # never fewer seeds than asked: a run that misses a threshold is censored, not dropped
    assert all(s["n"] == 2 for s in result["summary"]), result["summary"]
    for row in result["runs"]:
        for quantity in row.get("censored", []):
            assert row[quantity] == 8  # relu-tanh's tiny budget: the steps the run trained
    if module is relu_tanh:  # no wall-clock seconds; step time measured interleaved instead
        assert not any(k.startswith("seconds_to") for r in result["runs"] for k in r)
        assert set(result["step_time"]["variants"]) == {"relu", "tanh"}
        assert result["step_time"]["rounds"] == 2
    assert all(c["paired"] for c in result["comparisons"])
    table = (tmp_path / "table.md").read_text()
    assert "|" in table
    for name in pictures:
        assert (tmp_path / name).stat().st_size > 1000, name
    # rerun: every finished run is reused; its training time, read from each run's own
    # metrics.jsonl, is still counted in train_s
    again, _ = _run(module, data, tmp_path, tiny)
    assert again == 0
    rerun = json.loads((tmp_path / "result.json").read_text())
    elapsed = [
        json.loads(p.read_text().splitlines()[-1])["elapsed"]
        for p in (tmp_path / "runs").glob("*/metrics.jsonl")
    ]
    assert rerun["runs_reused"] == trainings and len(elapsed) == trainings
    assert rerun["train_s"] == pytest.approx(sum(elapsed), abs=0.1) and rerun["train_s"] > 0


@pytest.mark.slow  # a minute of 224-px training; `reproduce` end to end: test_experiment_end_to_end
def test_paper_net_end_to_end(tiny, colour, tmp_path):
    calls, _ = _run(paper_net, colour, tmp_path, tiny, seeds=1)
    assert calls == 1
    result = json.loads((tmp_path / "result.json").read_text())
    rows = {r["variant"]: r for r in result["runs"]}
    assert set(rows) == {"1-crop", "10-crop"}
    assert 0 <= rows["10-crop"]["top1_error"] <= 1
    assert (tmp_path / "kernels.png").stat().st_size > 1000
    # one seed still gets a verdict: 10 vs 1 crop paired over the 16 test images, recomputed
    # image by image from the saved weights; it must agree with the engine's two evaluations
    (by_image,) = [c for c in result["comparisons"] if c.get("over") == "test images"]
    assert by_image["n"] == 16 and by_image["paired"] and by_image["ci95"] is not None
    engine = rows["10-crop"]["top1_error"] - rows["1-crop"]["top1_error"]
    assert by_image["estimate"] == pytest.approx(engine, abs=1e-9)
    assert "n=16 test images" in (tmp_path / "table.md").read_text()


def test_towers_refuses_grayscale(gray, tmp_path):
    ctx = Context("towers", gray, tmp_path, "quick", 1, "cpu", log=io.StringIO())
    with pytest.raises(UserError, match="grayscale"):
        runner.reproduce(ctx, towers)


VARIANTS = ["no-lrn", "no-dropout", "no-pca", "no-crops-flips", "no-overlap", "one-tower-half",
            "no-conv2"]  # fmt: skip


def _full_and_variant(data, tmp_path, variant, family):
    """The engine's start (TrainState) of the full config and of one variant of the ablations'
    or depth's plan, seed 3."""
    ctx = Context("ablations", data, tmp_path, "quick", 4, "cpu", family=family)
    runs = [*ablations.plan(ctx).runs, *depth.plan(ctx).runs]
    configs = {s.variant: s.cfg for s in runs if s.seed == 3}
    return [_start(configs[name]) for name in ("full", variant)], configs


def _start(cfg):
    """What the training loop starts `cfg` from: its network (seeded, paired with `init_like`)
    and its crop geometry."""
    ds = open_dataset(cfg.data, "train")
    net = build_model(cfg, ds)
    geometry = plan_geometry(
        ds.image_size, net.input_size, augment=cfg.augment, pad=cfg.pad, resize=cfg.resize
    )
    return SimpleNamespace(net=net, geometry=geometry, cfg=cfg)


@pytest.mark.parametrize("variant", VARIANTS)
def test_paired_variants_start_from_the_same_weights(gray, tmp_path, variant, tiny):
    """Same seed, one feature switched: the engine starts every tensor that the full model and
    the variant share (same name and shape) from the same value; the rest differ in shape."""
    states, configs = _full_and_variant(gray, tmp_path, variant, "small")
    a, b = (s.net.state_dict() for s in states)
    shared = [k for k in a if k in b and a[k].shape == b[k].shape]
    for k in shared:
        assert torch.equal(a[k], b[k]), k
    if variant in ("no-overlap", "one-tower-half", "no-conv2"):  # some layers change shape
        assert 2 <= len(shared) < len(a)
    else:  # nothing changes shape: every tensor is shared
        assert len(shared) == len(a) == len(b)
    if variant == "no-conv2":  # without pairing, removing a layer shifts the others' draws
        c = _start(dataclasses.replace(configs[variant], init_like=None)).net.state_dict()
        assert any(not torch.equal(a[k], c[k]) for k in shared)


@pytest.mark.slow  # four 224-px trainings; the paper family's variants: the test after it
def test_depth_on_the_paper_network_removes_each_middle_layer(tiny, colour, tmp_path, monkeypatch):
    # --family paper: the 224 px network, conv2, conv3 and conv4 each removed in turn (§7)
    monkeypatch.setitem(ablations.BUDGET, "quick", (8, 1))
    monkeypatch.setattr(ablations, "BATCH", 4)
    calls, _ = _run(depth, colour, tmp_path, tiny, seeds=1, family="paper")
    assert calls == 4
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["family"] == "paper"
    assert {r["variant"] for r in result["runs"]} == {"full", "no-conv2", "no-conv3", "no-conv4"}
    assert {c["a"] for c in result["comparisons"]} == {"no-conv2", "no-conv3", "no-conv4"}
    configs = [
        json.loads(p.read_text())["model"] for p in (tmp_path / "runs").glob("*/config.json")
    ]
    assert {c["name"] for c in configs} == {"paper"}
    assert {c["options"]["remove_conv"] for c in configs} == {None, "conv2", "conv3", "conv4"}


@pytest.mark.parametrize("variant", ["no-conv3", "one-tower-half", "no-crops-flips"])
def test_paper_family_variants_pair_and_switch_one_thing(colour, tmp_path, variant, tiny):
    states, _ = _full_and_variant(colour, tmp_path, variant, "paper")
    a, b = (s.net.state_dict() for s in states)
    shared = [k for k in a if k in b and a[k].shape == b[k].shape]
    assert all(torch.equal(a[k], b[k]) for k in shared)
    if variant == "no-crops-flips":  # 256 px images resized to 224: the crop cannot move
        assert states[1].geometry == {"crop_size": 224, "resize": 224, "pad": 0}
        assert states[0].geometry["resize"] == 256 and not states[1].cfg.flip
    elif variant == "one-tower-half":  # §3.2: half the kernels in every conv layer but the last
        assert states[1].net.config["options"]["widths"] == [48, 128, 192, 192, 256]
    else:
        assert 2 <= len(shared) < len(a)


def test_reproduce_family_rules(colour, tmp_path, capsys):
    from alexnet.cli import main

    for name, family in (("relu-tanh", "paper"), ("paper-net", "small")):
        code = main(["reproduce", name, "--data", str(colour), "--family", family,
                     "--output-dir", str(tmp_path / name)])  # fmt: skip
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "does not apply" in err, err
        assert not (tmp_path / name).exists()

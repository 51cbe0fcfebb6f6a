"""The README's "Your own images": the three commands, copied from the README, turn a folder of
class folders and torchvision's weights file (a `.pth` in torchvision's layout) into a
fine-tuned model, its accuracy and predictions. Two flags are added for speed (one epoch, batch
8) and torchvision's name is replaced by the local file (nothing downloads in a test)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import torch
import torchvision
from data_helpers import jpeg_bytes, photo
from train_helpers import env

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands() -> list[list[str]]:
    section = README.read_text().split("## Your own images", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    return [shlex.split(line) for line in block.strip().splitlines()]


def test_the_readme_road_from_photos_to_a_fine_tuned_model(tmp_path):
    import subprocess
    import sys

    commands = _commands()
    assert [c[:2] for c in commands] == [["alexnet", "prepare"], ["alexnet", "train"],
                                         ["alexnet", "predict"]]  # fmt: skip
    for k, name in enumerate(("cats", "dogs", "birds")):
        folder = tmp_path / "photos" / name
        folder.mkdir(parents=True)
        for i in range(10):
            (folder / f"{i}.jpg").write_bytes(jpeg_bytes(photo(100 * k + i, 80, 60)))
    torch.manual_seed(0)
    pth = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(torchvision.models.alexnet().state_dict(), pth)
    commands[1] = [str(pth) if a == "torchvision" else a for a in commands[1]]
    commands[1] += ["--epochs", "1", "--batch-size", "8"]
    done = []
    for command in commands:
        done.append(
            subprocess.run(
                [sys.executable, "-m", "alexnet", *command[1:]],
                cwd=tmp_path,
                env=env(),
                capture_output=True,
                text=True,
                timeout=300,
            )
        )
        assert done[-1].returncode == 0, (command, done[-1].stderr)
    train = done[1].stderr
    assert "the last layer (classifier.6.bias, classifier.6.weight) is re-made" in train
    assert "frozen: conv1, pool1, conv2, pool2, conv3, conv4, conv5" in train
    assert re.search(r"done \(finished\): .*; val error top-1 [\d.]+ %", train)
    final = json.loads((tmp_path / "runs/photos/eval.json").read_text())
    assert final["images"] == 6 and 0 <= final["top1_error"] <= 1  # a fifth of each class
    answers = done[2].stdout
    assert answers.count("cats/") == 10 and re.search(r"\b(cats|dogs|birds)\b", answers)

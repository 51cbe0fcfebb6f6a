"""Every Python snippet of docs/data.md runs, in order, on a small packed dataset named OUT (raw
and JPEG), with the placeholders the text names (`batch_size`, `epoch`, `generator`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from alexnet import cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "data.md"
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_the_snippets_of_docs_data_md_run(encoding, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["prepare", "synthetic", "OUT", "--source", "synthetic", "--count", "8", "--classes",
            "2", "--image-size", "232", "--encoding", encoding, "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    code = snippets()
    assert len(code) >= 4, "docs/data.md lost its snippets"
    scope = {"batch_size": 4, "epoch": 1, "generator": torch.Generator().manual_seed(0)}
    for block in code:
        exec(compile(block, f"{DOC}:snippet", "exec"), scope)
    assert scope["ds"].encoding == encoding
    assert scope["x"].shape == (4 * 10, 3, 224, 224)  # the last snippet's 10 crops
    assert scope["v"].ok

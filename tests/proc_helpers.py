"""Shared helper for the tests that need a fresh Python process (what an import does first)."""

from __future__ import annotations

import subprocess
import sys


def python_stdout(code: str) -> str:
    """The stdout of `python -c code` in a new process of this interpreter; the test fails
    with the end of its stderr unless it exits 0."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout

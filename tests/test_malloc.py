"""The allocator setting: on in the CLI process, off after a plain `import alexnet`, and off
in the CLI when ALEXNET_MALLOC=0. Observed through glibc itself: `mallinfo2().hblks` counts
the blocks served by mmap, so a 64 MB malloc raises it only when mmap is allowed."""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import sys

import pytest
from train_helpers import env

PROBE = """
import ctypes, ctypes.util, sys
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
{setup}
before = libc.mallinfo2().hblks
p = libc.malloc(64 << 20)
print(libc.mallinfo2().hblks - before)
libc.free(ctypes.c_void_p(p))
"""


def _glibc_has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallinfo2")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _glibc_has_mallinfo2(), reason="needs glibc >= 2.33")


def _mmapped_blocks(setup: str, **extra: str) -> int:
    code = PROBE.format(setup=setup)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env(**extra), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_import_leaves_the_allocator_alone():
    assert _mmapped_blocks("import alexnet, alexnet.cli, alexnet.train") == 1


def test_cli_serves_large_blocks_from_the_heap():
    setup = "from alexnet.cli import main; main(['summary', '--model', 'small', '--json'])"
    assert _mmapped_blocks(setup) == 0


def test_switch_turns_it_off():
    setup = "from alexnet.cli import main; main(['summary', '--model', 'small', '--json'])"
    assert _mmapped_blocks(setup, ALEXNET_MALLOC="0") == 1

"""The command line answers at once and every interruption ends in one line (exit 130).

- building every sub-command's parser imports no torch (nor numpy, PIL, matplotlib, fastapi):
  `alexnet --help`, `alexnet CMD --help` and `alexnet weights` never pay torch's seconds (their
  times and memory are a benchmark: benchmarks/bench_startup.py);
- Ctrl-C (SIGINT) at moments spread from the moment its handlers are in (the first statement
  of `alexnet.__main__`; before it Python itself is starting) over the first
  seconds of `alexnet train` and `alexnet prepare` (imports, parsing, start-up, work) ends with
  exit status 130 and one last line, no traceback; SIGTERM the same with 143.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from data_helpers import synthetic_data

HEAVY = ("torch", "torchvision", "numpy", "PIL", "matplotlib", "scipy", "fastapi", "uvicorn")


def _modules_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.strip().splitlines()[-1])  # a printed list of names


def test_building_every_parser_imports_no_torch():
    assert _modules_after("from alexnet import cli\ncli.build_parser()") == []


def test_alexnet_weights_runs_without_torch():
    code = "from alexnet import cli\nassert cli.main(['weights']) == 0"
    assert _modules_after(code) == []


def _handlers_in(pid: int) -> bool:
    """Whether process `pid` catches SIGTERM (bit 15 of /proc's SigCgt mask): `exit_at_once`,
    the first statement of `alexnet.__main__`, has run. Before it, Python itself is starting
    (`-m`'s runpy, the package's imports), where no program can catch Ctrl-C."""
    try:
        with open(f"/proc/{pid}/status") as status:
            caught = next(line for line in status if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def _interrupt_at(argv: list[str], delay: float, sig=signal.SIGINT) -> tuple[int, str]:
    """Send `sig` `delay` seconds after the start, and never before the handlers are in (on a
    loaded machine Python's own start-up can take longer than `delay`); `delay` 0: at once."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "alexnet", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not _handlers_in(proc.pid) and proc.poll() is None:
        assert time.perf_counter() - t0 < 60, "the handlers never came in"
        time.sleep(0.001)
    time.sleep(max(0.0, delay - (time.perf_counter() - t0)))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_ctrl_c_at_any_moment_is_one_line_and_exit_130(tmp_path):
    data = synthetic_data(tmp_path / "data", count=200)
    moments = [0.0, 0.1, 0.3, 0.7, 1.2, 1.5, 1.7, 2.0, 3.5]
    failures = []
    for i, delay in enumerate(moments):
        train = ["train", "--data", str(data), "--output-dir", str(tmp_path / f"r{i}"), "--model",
                 "small", "--recipe", "fast", "--epochs", "50", "--batch-size", "32",
                 "--device", "cpu"]  # fmt: skip
        # a synthetic set that takes seconds to pack
        prepare = ["prepare", "synthetic", str(tmp_path / f"p{i}"), "--source", "synthetic",
                   "--count", "3000", "--image-size", "64", "--no-progress"]  # fmt: skip
        for argv in (train, prepare) if delay < 1.5 and i % 2 == 0 else (train,):
            code, err = _interrupt_at(argv, delay)
            if code != 130 or not _one_last_line(err, "interrupted", "SIGINT"):
                failures.append(f"{argv[0]} at {delay:.2f}s: exit {code}: {err[-600:]}")
    assert failures == [], "\n".join(failures)


def _one_last_line(err: str, said: str, signal_name: str) -> bool:
    """No traceback, and the last line is the command's own: the signal named, or the stop
    after a saved checkpoint (training's progress lines come before it)."""
    lines = err.strip().splitlines()
    return (
        "Traceback" not in err
        and bool(lines)
        and (
            lines[-1].startswith(("alexnet train: ", "alexnet prepare: ", "alexnet: "))
            and said in lines[-1]
            or lines[-1].startswith(f"stopped by {signal_name} at epoch")
        )
    )


def test_sigterm_at_any_moment_is_one_line_and_exit_143(tmp_path):
    """SIGTERM (what torchrun, SLURM and `kill` send) before training has taken it over ends as
    Ctrl-C does, with 143; once training runs, it saves a checkpoint first."""
    data = synthetic_data(tmp_path / "data", count=200)
    failures = []
    for i, delay in enumerate([0.0, 0.7, 1.5, 3.5]):
        argv = ["train", "--data", str(data), "--output-dir", str(tmp_path / f"r{i}"), "--model",
                "small", "--recipe", "fast", "--epochs", "50", "--batch-size", "32",
                "--device", "cpu"]  # fmt: skip
        code, err = _interrupt_at(argv, delay, signal.SIGTERM)
        if code != 143 or not _one_last_line(err, "terminated", "SIGTERM"):
            failures.append(f"train at {delay:.2f}s: exit {code}: {err[-600:]}")
    assert failures == [], "\n".join(failures)


def test_a_command_imports_its_own_module_only():
    """`alexnet CMD` builds only CMD's parser in full (the others are names): a run of one
    command does not import the other commands' modules."""
    code = (
        "import sys\nfrom alexnet import cli\n"
        "args = cli.build_parser(cli._command_of(['summary', '--json'])).parse_args(['summary'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('alexnet.commands.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    imported = eval(done.stdout.strip())
    assert "alexnet.commands.summary" in imported and "alexnet.commands.train" not in imported
    assert imported == ["alexnet.commands.summary"], imported

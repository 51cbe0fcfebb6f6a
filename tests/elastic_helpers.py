"""A two-node torchrun job on this machine: two agents on 127.0.0.1 (c10d rendezvous, gloo,
one worker each), optionally with rank 1's worker SIGKILLed once the run has logged a chosen
step. Used by tests/test_train_elastic.py and benchmarks/bench_elastic.py.

Every port is held by the process that chose it: the rendezvous store is a TCPStore this
process serves on a port the kernel picked (port 0) for as long as the job runs, both agents
join it as clients (`is_host=false`), and the workers' store is the one torchrun's rank-0 agent
opens on a port of its own the same way. No port is chosen, closed, then handed to another
process (where anything else on the machine could take it in between).

    job = run_job(data, run_dir, ["--model", "small", ...], kill_at_step=4)
    job.returncodes, job.kill_time, job.agent_logs, job.steps_before_kill
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch.distributed as dist

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Job:
    """What one job did: agents' exit codes and logs, and the kill (if any)."""

    returncodes: list[int]
    agent_logs: list[str]
    wall_s: float
    kill_time: float | None = None  # time.time() of the SIGKILL
    killed_pid: int | None = None
    steps_before_kill: int = 0  # the last step rank 0 had logged when the worker was killed
    starts: list[dict] = field(default_factory=list)  # RUN/starts.jsonl


def store_server() -> dist.TCPStore:
    """A TCPStore served by this process on 127.0.0.1, on a port the kernel chose (`.port`)."""
    return dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def worker_pid(rank: int, marker: str) -> int | None:
    """The pid of the worker process of `rank` whose command line contains `marker`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in cmdline and "torch.distributed.run" not in cmdline:
            if f"RANK={rank}".encode() in environ and b"TORCHELASTIC_RUN_ID=" in b" ".join(environ):
                return int(entry.name)
    return None


def _last_step(run: Path) -> int:
    try:
        lines = (run / "steps.jsonl").read_text().splitlines()
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (OSError, ValueError, KeyError, IndexError):
        return 0


def run_job(
    data: Path,
    run: Path,
    train_args: list[str],
    *,
    kill_at_step: int | None = None,
    max_restarts: int = 1,
    timeout: float = 600.0,
    monitor_interval: float = 0.5,
) -> Job:
    """Run `alexnet train --data DATA --output-dir RUN --resume auto TRAIN_ARGS` as a 2-node job
    (`--log-every 1` so steps can be watched); SIGKILL rank 1's worker at `kill_at_step`."""
    rendezvous = store_server()  # held until the agents are done
    argv = ["train", "--data", str(data), "--output-dir", str(run), "--resume", "auto"]
    argv += ["--log-every", "1", *train_args]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"]
    torchrun += ["--nproc-per-node", "1", "--rdzv-backend", "c10d"]
    torchrun += ["--rdzv-endpoint", f"127.0.0.1:{rendezvous.port}", "--rdzv-conf", "is_host=false"]
    torchrun += ["--max-restarts", str(max_restarts), "--monitor-interval", str(monitor_interval)]
    agents, logs = [], []
    t0 = time.time()
    for node in range(2):
        log = open(run.parent / f"{run.name}.agent{node}.log", "w")  # noqa: SIM115
        logs.append(log)
        command = [*torchrun, "-m", "alexnet", *argv]
        agents.append(subprocess.Popen(command, env=_env(), stdout=log, stderr=subprocess.STDOUT))
    job = Job([], [], 0.0)
    try:
        if kill_at_step is not None:
            _kill_at(job, run, kill_at_step, agents, t0 + timeout)
        for agent in agents:
            agent.wait(timeout=max(1.0, t0 + timeout - time.time()))
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
        for log in logs:
            log.close()
    job.returncodes = [a.returncode for a in agents]
    job.wall_s = time.time() - t0
    job.agent_logs = [Path(log.name).read_text() for log in logs]
    starts = run / "starts.jsonl"
    job.starts = [json.loads(x) for x in starts.read_text().splitlines()] if starts.exists() else []
    return job


def _kill_at(job: Job, run: Path, step: int, agents, deadline: float) -> None:
    while _last_step(run) < step:
        if time.time() > deadline or any(a.poll() is not None for a in agents):
            raise RuntimeError(f"the job never reached step {step}")
        time.sleep(0.02)
    pid = worker_pid(1, str(run))
    if pid is None:
        raise RuntimeError("no worker of rank 1 found")
    job.steps_before_kill = _last_step(run)
    os.kill(pid, 9)
    job.kill_time, job.killed_pid = time.time(), pid

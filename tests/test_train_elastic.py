"""torchrun's restarts continue the run by themselves, on several nodes (on this CPU: two agents
on 127.0.0.1, gloo).

- one command line (`--resume auto`) for the first start and every restart;
- a worker SIGKILLed after the first checkpoint: the surviving rank exits by itself at once
  (one line, no traceback), the job restarts and finishes by itself, and its final weights equal
  the uninterrupted job's bit for bit; every epoch is in metrics.jsonl once; RUN/starts.jsonl
  shows the restart;
- the workers of a new generation agree on a store namespace no dead worker wrote to
  (`alexnet.runtime.generation_store`), whatever torchrun's per-node restart counts say;
- a world size that differs from the checkpoint's keeps the global batch, or is refused
  naming both sizes;
- a rank whose copy of the dataset differs from rank 0's stops every rank in one line naming it;
- `--resume auto` refuses a RUN of another model or of other data in one line.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import subprocess
import sys
import threading
import time

import data_helpers as dh
import pytest
import torch
from elastic_helpers import run_job, store_server
from train_helpers import env, metrics, popen, run, weights, write_packed

from alexnet.checkpoint import Checkpoint, reconcile_world_size
from alexnet.data.pack import prepare
from alexnet.data.packed import open_dataset
from alexnet.data.sources import ArraySource
from alexnet.errors import UserError
from alexnet.runtime import DistInfo
from alexnet.train.config import make_config

TRAIN = ["--recipe", "fast", "--model", "small", "--epochs", "2", "--batch-size", "16",
         "--checkpoint-every", "3", "--device", "cpu", "--dist-timeout", "60",
         "--model-options", '{"widths": [8, 8, 16]}']  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_packed(tmp_path_factory.mktemp("elastic") / "data", n_train=192, n_val=40)


def test_a_killed_worker_restarts_by_itself_and_ends_bitwise_equal(data, tmp_path):
    ref = run_job(data, tmp_path / "ref", TRAIN)
    assert ref.returncodes == [0, 0], ref.agent_logs[0][-2000:]
    job = run_job(data, tmp_path / "run", TRAIN, kill_at_step=4)
    assert job.returncodes == [0, 0], job.agent_logs[0][-3000:] + job.agent_logs[1][-2000:]
    wa, wb = (
        weights(tmp_path / "ref" / "weights.safetensors"),
        weights(tmp_path / "run" / "weights.safetensors"),
    )
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "not the uninterrupted job's weights"
    assert [m["epoch"] for m in metrics(tmp_path / "run")] == [1, 2]
    starts = job.starts
    assert [s["resumed"] for s in starts] == [False, True], starts
    assert starts[1]["global_step"] == 3 and starts[1]["generation"] == starts[0]["generation"] + 1
    survivor = job.agent_logs[0]  # node 0 ran rank 0, whose peer died
    assert "Traceback" not in survivor and survivor.count("lost a peer") == 1, survivor[-3000:]
    # the survivor left by itself (exit 1), not at torchrun's SIGTERM / SIGKILL (-15 / -9),
    # and on its peer's death, not at the end of its --dist-timeout (60 s; about 1 s is usual)
    exit_line = re.search(r"(\d\d:\d\d:\d\d\.\d+) \d+ \S+\] failed \(exitcode: 1\)", survivor)
    assert exit_line is not None, survivor[-3000:]
    t = time.strptime(exit_line.group(1).split(".")[0], "%H:%M:%S")
    killed = time.localtime(job.kill_time)
    seconds = (t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec) - (
        killed.tm_hour * 3600 + killed.tm_min * 60 + killed.tm_sec
    )
    assert seconds < 30, f"the survivor took {seconds} s to leave: did it wait for the timeout?"


def test_generation_store_passes_over_a_dead_leaders_announcement():
    import torch.distributed as dist

    from alexnet.runtime import generation_store

    server = store_server()
    # what a dead generation left: its counter, announcement and confirmed tokens
    server.add("alexnet/generation/counter", 1)
    server.set("alexnet/generation/leader", "1")
    server.set("alexnet/generation/1/ready", '["dead0", "dead1"]')
    got: dict[int, tuple[str, int]] = {}

    def rank(r: int, delay: float) -> None:
        time.sleep(delay)
        client = dist.TCPStore("127.0.0.1", server.port, is_master=False)
        store, generation = generation_store(client, r, 2, timeout_s=30)
        store.set(f"hello{r}", str(r))
        got[r] = (store.get(f"hello{1 - r}").decode(), generation)

    threads = [threading.Thread(target=rank, args=(1, 0.0)), threading.Thread(target=rank,
               args=(0, 0.5))]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got == {0: ("1", 2), 1: ("0", 2)}  # generation 2, one namespace, not the dead 1


def test_a_rank_without_its_leader_gives_up_in_one_line():

    from alexnet.runtime import generation_store

    t0 = time.perf_counter()
    with pytest.raises(UserError, match="did not form the process group"):
        generation_store(store_server(), 1, 2, timeout_s=1.0)
    assert 1.0 <= time.perf_counter() - t0 < 10  # its own timeout, then one line, not a hang


def _ckpt(world_size: int, batch: int, global_batch: int) -> Checkpoint:
    return Checkpoint(model_config={}, model={}, world_size=world_size, batch=batch,
                      global_batch=global_batch)  # fmt: skip


def test_another_world_size_keeps_the_global_batch_or_is_refused():
    cfg = dataclasses.replace(make_config("fast", batch_size=16), resume="RUN")
    one, three = DistInfo(0, 1, 0), DistInfo(0, 3, 0)
    assert reconcile_world_size(cfg, _ckpt(2, 5, 32), one).batch_size == 32  # 32 = 32 x 1
    with pytest.raises(UserError, match=r"written by 2 process\(es\).*this start has 3"):
        reconcile_world_size(cfg, _ckpt(2, 5, 32), three)
    with pytest.raises(UserError, match="mid-epoch with a global batch of 32"):
        reconcile_world_size(cfg, _ckpt(1, 5, 32), one)  # --batch-size 16 would move it
    assert reconcile_world_size(cfg, _ckpt(1, 0, 32), one).batch_size == 16  # epoch boundary


def test_a_two_process_checkpoint_continues_in_one_process(data, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "alexnet", "train", "--data", str(data), "--output-dir", str(out),
           *TRAIN, "--max-steps", "4"]  # fmt: skip
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    more = run(["train", "--resume", str(out), "--max-steps", "6"])
    assert more.returncode == 0, more.stderr
    assert "(was 2 processes)" in more.stderr
    starts = [line for line in (out / "starts.jsonl").read_text().splitlines()]
    assert '"previous_world_size": 2' in starts[-1] and '"batch_size": 32' in starts[-1]


def test_resume_auto_starts_continues_and_knows_a_finished_run(data, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--output-dir", str(out), "--resume", "auto", *TRAIN]
    first = run(argv)
    assert first.returncode == 0, first.stderr
    weights_before = (out / "weights.safetensors").stat().st_mtime_ns
    again = run(argv)
    assert again.returncode == 0, again.stderr
    assert "finished already" in again.stderr and "epoch 1" not in again.stderr
    assert (out / "weights.safetensors").stat().st_mtime_ns == weights_before
    other = run([*argv, "--model-options", '{"widths": [8, 8, 32]}'])
    assert other.returncode == 2 and "another model" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    elsewhere = write_packed(tmp_path / "other-data", n_train=192, n_val=40, seed=1)
    moved = run([*argv, "--data", str(elsewhere)])
    assert moved.returncode == 2, moved.stderr
    assert moved.stderr.strip().splitlines() == [
        f"alexnet train: error: {out}: checkpoint was trained on other data (fingerprint "
        f"test-0-192-28 in the checkpoint, test-1-192-28 in --data)"
    ]
    assert (out / "weights.safetensors").stat().st_mtime_ns == weights_before


def test_plain_output_dir_under_torchrun_names_the_auto_form(data, tmp_path):
    out = tmp_path / "run"
    assert run(["train", "--data", str(data), "--output-dir", str(out), *TRAIN,
                "--max-steps", "1"]).returncode == 0  # fmt: skip
    again = run(["train", "--data", str(data), "--output-dir", str(out), *TRAIN],
                TORCHELASTIC_MAX_RESTARTS="2")  # fmt: skip
    assert again.returncode == 2
    assert f"--output-dir {out} --resume auto" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_a_rank_with_other_data_stops_every_rank_in_one_line_naming_it(tmp_path):
    """Two ranks (gloo, started as torchrun would: RANK, WORLD_SIZE, MASTER_ADDR/PORT), each
    with its own copy of the dataset; rank 1's was prepared from a source one byte different in
    one training image, so its fingerprint differs: every rank stops before training, in one
    line naming rank 1 and its host."""
    (images, labels), val = dh.photo_arrays(32), dh.photo_arrays(8, seed=1)
    changed = images.copy()
    changed[5, 10, 10, 1] ^= 1  # one byte of one record
    copies = [tmp_path / "rank0-data", tmp_path / "rank1-data"]
    for root, train in zip(copies, (images, changed)):
        arrays = {"train": (train, labels), "val": val}
        prepare(ArraySource("photos", ["a", "b", "c"], arrays, {}), root, workers=1,
                progress=False)  # fmt: skip
    fp = [open_dataset(root).fingerprint for root in copies]
    assert fp[0] != fp[1]
    # the store both ranks meet in is served here, as torchrun's agent serves it
    store, host = store_server(), socket.gethostname()
    ranks = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port)}
    ranks["TORCHELASTIC_USE_AGENT_STORE"] = "True"
    argv = ["train", "--output-dir", str(tmp_path / "run"), *TRAIN]
    procs = [
        popen([*argv, "--data", str(copies[r])], RANK=str(r), LOCAL_RANK=str(r), **ranks)
        for r in (0, 1)
    ]
    try:
        errs = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    names = f"rank 0 on {host} has fingerprint {fp[0]}, but rank 1 on {host} ({fp[1]})"
    for r, (p, err) in enumerate(zip(procs, errs)):
        assert p.returncode == 2, f"rank {r}: {err[-3000:]}"
        lines = err.strip().splitlines()
        assert len(lines) == 1, f"rank {r}: {err[-3000:]}"
        assert lines[0].startswith(f"alexnet train: error: {copies[r]}: not the same packed")
        assert names in lines[0], lines[0]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()

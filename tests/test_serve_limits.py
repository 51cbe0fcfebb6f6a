"""What one client may hold of `alexnet serve`: a real server in a subprocess, real sockets.

- A client that has not sent its whole request (a stalled header, a stalled body, a header
  dripped a byte at a time) within --request-timeout-s gets 408 and is disconnected, while
  other clients are answered meanwhile.
- Beyond --max-connections a new connection is answered 503 at once.
- A burst of large images stays under the memory formula of docs/serve.md: the server's peak
  RSS (VmHWM of its process) grows by at most --max-decoding x pixels x bytes per pixel, plus
  the bodies in flight and a small allowance, above its peak before the burst.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import data_helpers as dh
import numpy as np
import pytest
import torch
from test_serve import MEAN, STD, Server

from alexnet import get_model
from alexnet.weights import save as save_weights

httpx = pytest.importorskip("httpx")

TIMEOUT_S = 2.0  # --request-timeout-s of the server under test
MAX_CONNECTIONS = 32
MAX_DECODING = 2
SIDE = 1600  # the burst's images: SIDE x SIDE RGB PNGs, just under --max-pixels
MAX_PIXELS = SIDE * SIDE + 1
BURST = 16  # concurrent requests, each one such image
RGB_BYTES_PER_PIXEL = 14  # docs/serve.md: an 8-bit RGB PNG's decode peaks at 14 bytes a pixel
ALLOWANCE_MB = 16  # decode threads, allocator arenas, the small model's batch (measured ~3 MB)


def small_weights(root: Path) -> Path:
    """A `small` (32 px, 10 classes) model with random weights."""
    torch.manual_seed(0)
    model = get_model("small", num_classes=10, in_channels=3, input_size=32)
    preprocess = {"crop_size": 32, "resize": None, "out_channels": 3, "normalize": "channel",
                  "mean": MEAN, "std": STD}  # fmt: skip
    path = root / "small.safetensors"
    save_weights(path, model.state_dict(), model_config=model.config,
                 classes=[f"c{i}" for i in range(10)], preprocess=preprocess)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_limits")
    args = ["--weights", str(small_weights(root)), "--request-timeout-s", str(TIMEOUT_S),
            "--max-connections", str(MAX_CONNECTIONS), "--max-decoding", str(MAX_DECODING),
            "--max-pixels", str(MAX_PIXELS), "--keep-alive-s", "30", "--access-log"]  # fmt: skip
    with Server(root / "server.log", *args) as s:
        yield s
        assert s.stop() == 0


def address(server) -> tuple[str, int]:
    parts = urlsplit(server.url)
    return parts.hostname, parts.port


def connect(server, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(address(server), timeout=5)
    if first:
        sock.sendall(first)
    sock.setblocking(False)
    return sock


def open_connections(client) -> int:
    return client.get("/healthz").json()["connections"]


def wait_connections(client, n: int, timeout: float = 10.0) -> int:
    """Poll /healthz until the server counts `n` open connections (bounded)."""
    deadline, seen = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        seen = open_connections(client)
        if seen == n:
            return seen
        time.sleep(0.05)
    return seen


def watch_until_closed(
    socks: dict[str, socket.socket], opened: dict[str, float], drip: bytes, limit: float
) -> dict:
    """Read every socket until the server closes it (or `limit` seconds pass); socket "drip"
    gets one more byte of `drip` every 0.25 s while open. -> {name: (seconds from `opened`
    [name] to the close, bytes read)}."""
    t0, got = time.monotonic(), {name: b"" for name in socks}
    closed: dict[str, tuple[float, bytes]] = {}
    next_drip, pos = t0, 0
    while len(closed) < len(socks) and time.monotonic() - t0 < limit:
        now = time.monotonic()
        if "drip" in socks and "drip" not in closed and now >= next_drip and pos < len(drip):
            try:
                socks["drip"].send(drip[pos : pos + 1])
                pos, next_drip = pos + 1, now + 0.25
            except OSError:  # reset by the server: read what it said, then count it closed
                pass
        open_socks = [s for n, s in socks.items() if n not in closed]
        ready, _, _ = select.select(open_socks, [], [], 0.05)
        for name, sock in socks.items():
            if sock in ready and name not in closed:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                got[name] += chunk
                if not chunk:
                    closed[name] = (time.monotonic() - opened[name], got[name])
    return closed


def test_stalled_requests_get_408_and_are_disconnected(server):
    head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
    first = {
        "silent": b"",  # connects, never sends a byte
        "half header": head[:30],
        "drip": head[:2],  # then a byte every 0.25 s: never idle, never done
        "half body": head + b"Content-Length: 100000\r\n\r\n" + b"\x89PNG" * 250,
    }
    socks, opened = {}, {}
    for name, data in first.items():
        opened[name] = time.monotonic()
        socks[name] = connect(server, data)
    try:
        with httpx.Client(base_url=server.url, timeout=10, trust_env=False) as c:
            # others are answered meanwhile: before the first stalled client is cut
            assert c.get("/healthz").status_code == 200
            assert time.monotonic() < min(opened.values()) + TIMEOUT_S - 0.3
        closed = watch_until_closed(socks, opened, head * 10, limit=10 * TIMEOUT_S)
    finally:
        for s in socks.values():
            s.close()
    assert set(closed) == set(socks), (
        f"still open after {10 * TIMEOUT_S} s: {set(socks) - set(closed)}"
    )
    for name, (seconds, said) in closed.items():
        # cut at the deadline counted from the connection's first moment: not before it, and
        # not never (the bound is 10 times the deadline, for a loaded machine)
        assert TIMEOUT_S - 0.3 <= seconds <= 10 * TIMEOUT_S, (name, seconds)
        assert said.startswith(b"HTTP/1.1 408 "), (name, said[:80])
        phase = b"body" if name == "half body" else b"headers"
        assert b"request " + phase + b" not received within 2 s" in said, (name, said)
    with httpx.Client(base_url=server.url, timeout=10, trust_env=False) as c:
        metrics = c.get("/metrics").text
    assert 'alexnet_serve_request_timeouts_total{phase="headers"} 3.0' in metrics
    assert 'alexnet_serve_request_timeouts_total{phase="body"} 1.0' in metrics


def test_connections_beyond_the_bound_get_503_at_once(server):
    """MAX_CONNECTIONS - 1 kept-alive idle connections plus the poller fill the bound; every
    further connection is answered 503 at once, then one freed slot serves again."""
    with httpx.Client(base_url=server.url, timeout=10, trust_env=False) as poller:
        assert wait_connections(poller, 1) == 1  # the poller alone
        hogs = []
        for _ in range(MAX_CONNECTIONS - 1):
            hog = socket.create_connection(address(server), timeout=5)
            hog.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert hog.recv(4096).startswith(b"HTTP/1.1 200 ")  # then idle (--keep-alive-s 30)
            hogs.append(hog)
        try:
            assert open_connections(poller) == MAX_CONNECTIONS
            for _ in range(8):
                with httpx.Client(base_url=server.url, timeout=5, trust_env=False) as c:
                    r = c.get("/healthz")  # answered, not queued behind the idle hogs (30 s)
                assert r.status_code == 503 and r.headers["retry-after"] == "1"
                assert r.json() == {"error": f"server busy: {MAX_CONNECTIONS} connections open "
                                    f"(--max-connections {MAX_CONNECTIONS})"}  # fmt: skip
            assert "alexnet_serve_connections_refused_total 8.0" in poller.get("/metrics").text
            hogs.pop().close()
            assert wait_connections(poller, MAX_CONNECTIONS - 1) == MAX_CONNECTIONS - 1
            with httpx.Client(base_url=server.url, timeout=5, trust_env=False) as c:
                assert c.get("/healthz").status_code == 200
        finally:
            for hog in hogs:
                hog.close()
        assert wait_connections(poller, 1) == 1


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def large_png() -> bytes:
    """A SIDE x SIDE RGB PNG: a smooth gradient (compresses to a small body)."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.int32)
    img = np.stack([xx % 256, yy % 256, (xx // 7 + yy) % 256], -1)
    return dh.png_bytes(img.astype(np.uint8))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/PID/status")
def test_burst_of_large_images_stays_under_the_formula(server):
    """Before --max-decoding, the default thread pool decoded min(32, cores + 4) images at
    once: 6 here (3 times the bound), 20 on a 16-core machine."""
    body, hdr = large_png(), {"Content-Type": "image/png"}
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
        small = dh.png_bytes(dh.photo(0, 64, 48))
        assert c.post("/v1/predict", content=small, headers=hdr).status_code == 200
    before = vm_kib(server.proc.pid, "VmHWM")

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=BURST)
        async with httpx.AsyncClient(
            base_url=server.url, timeout=60, limits=limits, trust_env=False
        ) as ac:
            rs = await asyncio.gather(
                *(ac.post("/v1/predict", content=body, headers=hdr) for _ in range(BURST))
            )
        return [r.status_code for r in rs]

    assert asyncio.run(burst()) == [200] * BURST
    grown_mb = (vm_kib(server.proc.pid, "VmHWM") - before) / 1024
    one_decode_mb = SIDE * SIDE * RGB_BYTES_PER_PIXEL / 2**20
    bodies_mb = 2 * BURST * len(body) / 2**20  # read in chunks, then joined
    bound_mb = MAX_DECODING * one_decode_mb + bodies_mb + ALLOWANCE_MB
    assert grown_mb <= bound_mb, (grown_mb, bound_mb)
    assert grown_mb >= 0.5 * one_decode_mb, grown_mb  # the burst did decode full-size images


def read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response (headers, then Content-Length bytes of body): the body may
    arrive in a later segment than the headers."""
    sock.settimeout(10)
    got = b""
    while b"\r\n\r\n" not in got:
        got += sock.recv(65536)
    head, body = got.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_idle_and_early_answers_are_not_cut_at_the_deadline(server):
    """A kept-alive connection idle past --request-timeout-s still serves its next request;
    an answer given before the body has arrived (415) closes the connection, without a 408."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(address(server), timeout=10) as sock:
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(TIMEOUT_S + 0.5)  # idle between requests: --keep-alive-s 30 applies
        sock.sendall(request.replace(b"Host: x", b"Host: x\r\nConnection: close"))
        assert read_until_closed(sock).startswith(b"HTTP/1.1 200 ")
    head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
    with socket.create_connection(address(server), timeout=10) as sock:
        sock.sendall(head + b"Content-Length: 1000\r\n\r\n" + b"x" * 10)  # then stalls
        said = read_until_closed(sock)
    assert said.startswith(b"HTTP/1.1 415 ") and b"connection: close" in said.lower()
    assert b" 408 " not in said


def test_access_log_names_each_request(server):
    with httpx.Client(base_url=server.url, timeout=10, trust_env=False) as c:
        assert c.get("/healthz?probe=access-log").status_code == 200
    fd, out = server.proc.stdout.fileno(), b""  # raw reads: select sees what is unread
    deadline = time.monotonic() + 10
    while b"probe=access-log" not in out and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            out += os.read(fd, 65536)
    text = out.decode(errors="replace")
    line = next((x for x in text.splitlines() if "probe=access-log" in x), text[-300:])
    assert '"GET /healthz?probe=access-log HTTP/1.1" 200' in line, line


def test_sigterm_right_after_start_exits_0(tmp_path):
    """SIGTERM the moment the address is printed (before uvicorn handles signals itself):
    once it killed the server (-15) or was swallowed (the server never stopped)."""
    with Server(tmp_path / "server.log", "--weights", str(small_weights(tmp_path))) as s:
        assert s.stop(timeout=30) == 0


def test_a_too_long_request_head_gets_the_json_error(server):
    """A 1 MB header is refused with 431 and the JSON error body every refusal has (uvicorn
    alone answers a plain-text 400); a header split over many segments is counted whole."""
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    with socket.create_connection(address(server), timeout=10) as sock:
        try:
            sock.sendall(big)
        except OSError:  # the server may close before every byte is sent
            pass
        said = read_until_closed(sock)
    head, _, body = said.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ") and b"application/json" in head.lower(), said[:200]
    assert "longer than 16384 bytes" in json.loads(body)["error"]
    # a long but allowed head, sent in small pieces, is still answered
    fine = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "
        + b"b" * 8000
        + b"\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(address(server), timeout=10) as sock:
        for i in range(0, len(fine), 1000):
            sock.sendall(fine[i : i + 1000])
        assert read_until_closed(sock).startswith(b"HTTP/1.1 200 ")

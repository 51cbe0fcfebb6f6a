"""`alexnet serve`: the JSON API, Prometheus metrics and the page, in one process."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from dataclasses import fields

from alexnet import commands as A
from alexnet.errors import UserError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# (flag, type, default, help), in --help's order
LIMITS = [
    ("--port", A.int_range(0, 65535), 8000, "port, 0..65535 (default 8000; 0: any free)"),
    ("--max-batch", A.int_range(1, 4096), 32, "images per forward pass, 1..4096 (32)"),
    ("--max-wait-ms", A.float_range(0.0, 10_000.0), 5.0, "longest wait in ms for more images "
     "to fill a batch, while another request is on its way (see --always-wait), 0..10000 (5)"),
    ("--always-wait", None, False,
     "wait --max-wait-ms for more images even when no request is on its way"),
    ("--max-queue", A.int_range(1, 1_000_000), 256,
     "images waiting or running before new ones get 503, 1..1000000 (256)"),
    ("--max-body-mb", A.float_range(0.0, 4096.0, lo_open=True), 16.0,
     "request size limit in MiB, (0, 4096] (16)"),
    ("--max-pixels", A.int_range(1, 10**10), 40_000_000, "most pixels of an uploaded image (read "
     "from its header before decoding; more: 413), 1..10^10 (40,000,000)"),
    ("--max-decoding", A.int_range(1, 256), 2, "images decoded at once, 1..256 (2); the peak "
     "memory grows with it times --max-pixels"),
    ("--max-connections", A.int_range(1, 100_000), 256, "open connections, 1..100000 (256); "
     "beyond it a new connection is answered 503 + Retry-After: 1 at once and closed"),
    ("--request-timeout-s", A.float_range(0.0, 3600.0, lo_open=True), 30.0, "seconds a client "
     "has to send a whole request (line, headers, body) from its first byte, (0, 3600] (30); "
     "else 408 and closed"),
    ("--keep-alive-s", A.float_range(0.0, 3600.0, lo_open=True), 5.0,
     "idle seconds before a kept-alive connection is closed, (0, 3600] (5)"),
    ("--api-key", str, None,
     "require Authorization: Bearer KEY on /v1/* (default: $ALEXNET_API_KEY, else none)"),
]  # fmt: skip


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="HTTP API + a page: predictions, features, neighbours, conv1 (needs [serve])",
        description="Serve a trained AlexNet over HTTP: POST /v1/predict, /v1/features, "
        "/v1/neighbors (with --index), GET /v1/model, /healthz, /metrics and the page at /. "
        "Concurrent requests are batched into one forward pass (--max-batch, --max-wait-ms). "
        "Binds 127.0.0.1 unless --host says otherwise. A client must send its whole request "
        "within --request-timeout-s (else 408 and closed); beyond --max-connections a new "
        "connection gets 503 at once; at most --max-decoding images are decoded at once. "
        "SIGTERM finishes the requests in flight, then exits 0. The API key may also come "
        "from $ALEXNET_API_KEY. Limits, memory and replicas: docs/serve.md.",
    )
    A.add_weights(p)
    p.add_argument("--index", metavar="FEATS", help="features from `alexnet features`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    for flag, kind, default, text in LIMITS:  # kind None: a switch
        more = {"type": kind} if kind else {"action": "store_true"}
        p.add_argument(flag, default=default, help=text, **more)
    A.add_crops(p)
    A.add_device(p)
    p.add_argument(
        "--access-log",
        action="store_true",
        help="log every request to stdout (client, request line, status)",
    )
    return p


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=1024)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by connections
        return sock
    except OSError as exc:
        raise UserError(f"--host {host} --port {port}: cannot listen ({exc.strerror})") from None


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
        from starlette import formparsers

        from alexnet.serve.answers import Engine
        from alexnet.serve.app import ServeConfig, create_app
        from alexnet.serve.connections import MAX_HEAD_BYTES, protocol_class
    except ImportError as exc:
        raise UserError(f"serve needs {exc.name} (pip install 'alexnet[serve]')") from None
    if formparsers.multipart is None:  # starlette found neither of python-multipart's modules
        raise UserError("serve needs python-multipart for uploads (pip install 'alexnet[serve]')")
    args.api_key = args.api_key or os.environ.get("ALEXNET_API_KEY") or None
    engine = Engine(
        args.weights, args.device, crops=args.crops, index=args.index, max_pixels=args.max_pixels
    )
    made_with = engine.index and engine.index.weights
    if made_with and os.path.realpath(made_with) != os.path.realpath(args.weights):
        print(f"alexnet serve: warning: --index was computed with {made_with}", file=sys.stderr)
    cfg = ServeConfig(**{f.name: getattr(args, f.name) for f in fields(ServeConfig)})
    app = create_app(engine, cfg)
    sock = _listen(args.host, args.port)
    if args.host not in LOCAL_HOSTS:
        print(
            f"alexnet serve: warning: listening on {args.host}, reachable from other "
            "machines" + ("" if args.api_key else " without an API key"),
            file=sys.stderr,
        )
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=args.access_log,
        timeout_graceful_shutdown=60,
        lifespan="on",
        http=protocol_class(app.state.server.limits),
        timeout_keep_alive=args.keep_alive_s,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )
    if args.access_log:  # uvicorn's log_level also filters its access lines (INFO)
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    server = uvicorn.Server(config)
    # Installed before the address is printed: a SIGTERM before uvicorn takes the signal over
    # still stops it (uvicorn starts, sees should_exit, drains), and the SIGTERM uvicorn
    # re-raises once drained lands here too: exit 0 either way.
    signal.signal(signal.SIGTERM, lambda signum, frame: setattr(server, "should_exit", True))
    print(f"alexnet serve: {engine.info()['name']} on http://{shown}:{port}/", flush=True)
    server.run(sockets=[sock])
    print("alexnet serve: stopped", flush=True)
    return 0

"""What one client may hold: a deadline for its whole request (else 408, closed), a bound on the
request head (else 431, closed) and on open connections (beyond it: 503 at once, closed).

`protocol_class(limits)` is uvicorn's h11 protocol seen only through asyncio's `Protocol`
methods: it counts connections, refuses those over the bound, bounds the head, and starts a
connection's `Clock` when it opens and at the first byte of each later request.
`request_deadline`, an ASGI middleware, stops the clock once the body has arrived. They meet
through a context variable: uvicorn starts a request's task from `data_received` (or from the
end of the previous answer, when pipelined), so the task inherits its connection's clock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

from uvicorn.protocols.http.h11_impl import H11Protocol

REFUSED_LINGER_S = 1.0  # a refused connection reads (and drops) the client's bytes this long
MAX_HEAD_BYTES = 16 * 1024  # a request line + headers longer than this get 431 (h11's bound)


@dataclass
class ConnectionLimits:
    """The limits, the count of open connections, and what to tell the metrics: on_refused()
    (refused over the bound), on_timeout(phase) (cut at the deadline: "headers" or "body")."""

    max_connections: int = 256
    request_timeout: float = 30.0
    open: int = 0
    on_refused: Callable[[], None] = field(default=lambda: None, repr=False)
    on_timeout: Callable[[str], None] = field(default=lambda phase: None, repr=False)


def raw_response(status: int, reason: str, message: str, extra: str = "") -> bytes:
    """A complete HTTP/1.1 error answer, {"error": message}, that closes the connection."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode("ascii") + body


class Clock:
    """One connection's request deadline: at it, 408 (unless an answer has started, e.g. an
    early 413) and the connection is closed."""

    def __init__(self, limits: ConnectionLimits, transport: asyncio.Transport) -> None:
        self.limits, self.transport = limits, transport
        self.timer: asyncio.TimerHandle | None = None
        self.request = 0  # counts started requests: a finished one stops only its own clock
        self.phase = "headers"
        self.answered = False

    def start(self) -> None:
        if self.timer is None:
            self.request += 1
            self.phase, self.answered = "headers", False
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.limits.request_timeout, self._expired)

    def stop(self, request: int) -> None:
        if self.timer is not None and request == self.request:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        if self.transport.is_closing():
            return
        self.limits.on_timeout(self.phase)
        if not self.answered:
            t = self.limits.request_timeout
            msg = f"request {self.phase} not received within {t:g} s (--request-timeout-s)"
            self.transport.write(raw_response(408, "Request Timeout", msg))
        self.transport.close()  # uvicorn then ends the application's reads (http.disconnect)


_clock: ContextVar[Clock | None] = ContextVar("alexnet_serve_clock", default=None)


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the bounds and a request clock (module doc)."""

    limits: ConnectionLimits = ConnectionLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.clock: Clock | None = None
        self.dropping = False  # answered at once (503, 431): until the connection closes
        if self.limits.open >= self.limits.max_connections:
            self.transport, limit = transport, self.limits.max_connections
            msg = f"server busy: {limit} connections open (--max-connections {limit})"
            self._reject(503, "Service Unavailable", msg, "retry-after: 1\r\n")
            self.limits.on_refused()
            return
        self.limits.open += 1
        super().connection_made(transport)
        self.clock = Clock(self.limits, transport)
        self.clock.start()  # the first request's clock starts with the connection
        self.head: int | None = 0  # bytes of the current request's head so far (None: all in)
        self.tail = b""  # its last 3 bytes: the blank line that ends it may be split

    def _reject(self, status: int, reason: str, message: str, extra: str = "") -> None:
        """Answer at once, half-close and drop what the client still sends, then close after
        REFUSED_LINGER_S: closing with unread bytes would reset the connection and could lose
        the answer."""
        self.transport.write(raw_response(status, reason, message, extra))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        asyncio.get_running_loop().call_later(REFUSED_LINGER_S, self.transport.close)
        self.dropping = True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.clock is None:  # refused
            return
        self.clock.stop(self.clock.request)
        self.limits.open -= 1
        super().connection_lost(exc)

    def eof_received(self) -> None:
        if self.clock is None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.dropping:
            return
        request = self.clock.request
        self.clock.start()  # a no-op while the current request's clock runs
        if self.clock.request != request:  # a new request: its head is counted from here
            self.head, self.tail = 0, b""
        if self.head is not None and self._head_too_long(data):
            return
        _clock.set(self.clock)  # inherited by the request task uvicorn creates now
        super().data_received(data)

    def _head_too_long(self, data: bytes) -> bool:
        """Count `data` into the request's head; over MAX_HEAD_BYTES, answer 431 and close."""
        seen = self.tail + data
        if b"\r\n\r\n" in seen:
            self.head = None  # the head is complete
            return False
        self.head, self.tail = self.head + len(data), seen[-3:]  # type: ignore[operator]
        if self.head <= MAX_HEAD_BYTES:
            return False
        self.clock.stop(self.clock.request)  # type: ignore[union-attr]
        msg = f"request line and headers longer than {MAX_HEAD_BYTES} bytes"
        self._reject(431, "Request Header Fields Too Large", msg)
        return True


def protocol_class(limits: ConnectionLimits) -> type[LimitedH11Protocol]:
    """A protocol class for `uvicorn.Config(http=...)` bound to these limits."""
    return type("LimitedH11", (LimitedH11Protocol,), {"limits": limits})


def request_deadline(app):
    """ASGI middleware: the clock's phase becomes "body" when called, and it stops once the
    body has arrived. An answer started before that (401, 413, ...) closes the connection
    after it. Without a clock (a test client) it only passes through."""

    async def deadline(scope, receive, send) -> None:
        clock = _clock.get()
        if scope["type"] != "http" or clock is None:
            return await app(scope, receive, send)
        clock.start()  # a no-op, but for a pipelined request that arrived with the one before
        request, clock.phase = clock.request, "body"
        headers = dict(scope["headers"])
        received = headers.get(b"content-length", b"0") == b"0"
        received = received and b"transfer-encoding" not in headers
        if received:
            clock.stop(request)

        async def body_receive():
            nonlocal received
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                received = True
                clock.stop(request)
            return message

        async def answer_send(message) -> None:
            if message["type"] == "http.response.start":
                if request == clock.request:
                    clock.answered = True
                if not received:
                    message = {
                        **message,
                        "headers": [*message.get("headers", ()), (b"connection", b"close")],
                    }
            await send(message)

        await app(scope, body_receive, answer_send)

    return deadline

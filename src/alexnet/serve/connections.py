"""What one client may hold: a deadline for its whole request (else 408, closed), h11's bound on
the request head (else 431, closed) and a bound on open connections (beyond it: 503 at once,
closed). uvicorn's own options do not: `timeout_keep_alive` runs only between requests, and
`limit_concurrency` answers only once a whole request has arrived.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

REFUSED_LINGER_S = 1.0  # a refused connection reads (and drops) the client's bytes this long
MAX_HEAD_BYTES = 16 * 1024  # uvicorn's h11_max_incomplete_event_size: a longer head gets 431


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


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the bounds of `limits`. A request's clock runs from its first
    byte (the connection's opening, for the first) until h11 has read its whole body; at the
    deadline: 408 (unless an answer has started, e.g. an early 413) and the connection closed."""

    limits: ConnectionLimits = ConnectionLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.timer: asyncio.TimerHandle | None = None
        self.dropping = False  # answered at once (503, 431): until the connection closes
        self.refused = self.limits.open >= self.limits.max_connections
        if self.refused:
            self.transport, limit = transport, self.limits.max_connections
            msg = f"server busy: {limit} connections open (--max-connections {limit})"
            self._reject(503, "Service Unavailable", msg, "retry-after: 1\r\n")
            self.limits.on_refused()
            return
        self.limits.open += 1
        super().connection_made(transport)
        self._start_clock()

    def _start_clock(self) -> None:
        if self.timer is None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.limits.request_timeout, self._expired)

    def _stop_clock(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _clock(self) -> None:
        """Run the clock while a request is partly in: its body pending, or bytes of a head."""
        pending = self.conn.their_state is h11.SEND_BODY or self.conn.trailing_data[0]
        if pending and not self.dropping:
            self._start_clock()
        else:
            self._stop_clock()

    def _expired(self) -> None:
        self.timer = None
        if self.transport.is_closing():
            return
        phase = "body" if self.conn.their_state is h11.SEND_BODY else "headers"
        self.limits.on_timeout(phase)
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # no answer started
            t = self.limits.request_timeout
            msg = f"request {phase} not received within {t:g} s (--request-timeout-s)"
            self.transport.write(raw_response(408, "Request Timeout", msg))
        self.transport.close()  # uvicorn then ends the application's reads (http.disconnect)

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
        if self.refused:
            return
        self._stop_clock()
        self.limits.open -= 1
        super().connection_lost(exc)

    def eof_received(self) -> None:
        if self.refused:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.dropping:
            return
        self._start_clock()  # the first byte of a request (a no-op while its clock runs)
        super().data_received(data)
        self._clock()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request
        self._clock()

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers h11's errors with a plain-text 400; a head over MAX_HEAD_BYTES gets
        431 with the JSON error instead."""
        if len(self.conn.trailing_data[0]) <= MAX_HEAD_BYTES:
            return super().send_400_response(msg)
        self._stop_clock()
        msg = f"request line and headers longer than {MAX_HEAD_BYTES} bytes"
        self._reject(431, "Request Header Fields Too Large", msg)


def protocol_class(limits: ConnectionLimits) -> type[LimitedH11Protocol]:
    """A protocol class for `uvicorn.Config(http=...)` bound to these limits."""
    return type("LimitedH11", (LimitedH11Protocol,), {"limits": limits})


def close_early_answers(app):
    """ASGI middleware: an answer that starts before the request's body has arrived (401, 413,
    415, ...) closes the connection after it."""

    async def middleware(scope, receive, send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        headers = dict(scope["headers"])
        received = headers.get(b"content-length", b"0") == b"0"
        received = received and b"transfer-encoding" not in headers

        async def body_receive():
            nonlocal received
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                received = True
            return message

        async def answer_send(message) -> None:
            if message["type"] == "http.response.start" and not received:
                close = (b"connection", b"close")
                message = {**message, "headers": [*message.get("headers", ()), close]}
            await send(message)

        await app(scope, body_receive, answer_send)

    return middleware

"""What one client may hold: a deadline for its request, and a bound on open connections.

uvicorn's own `timeout_keep_alive` closes a connection idle *between* requests; nothing closes
one that sends half a request header (or half a body) and stops, and its `limit_concurrency`
answers 503 only once a request has fully arrived, so slow clients pile up without bound.
`protocol_class(limits)` is uvicorn's h11 protocol with two rules added:

- **Request deadline.** A request's line, headers and body must all have arrived within
  `limits.request_timeout` seconds of its first byte (of the connection opening, for the first
  request). Otherwise the client gets `408` with `Connection: close` and is disconnected; a
  client that drips one byte a second is cut at the same deadline. Time spent computing the
  answer, and idle time between requests (`timeout_keep_alive`), do not count.
- **Connection bound.** Beyond `limits.max_connections` open connections a new one is answered
  at once with `503` + `Retry-After: 1` + `Connection: close` and closed; it never holds
  request state.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

REFUSED_LINGER_S = 1.0  # a refused connection reads (and drops) the client's bytes this long


@dataclass
class ConnectionLimits:
    """The limits, the count of open connections, and what to tell the metrics.

    on_refused(): a connection refused over the bound; on_timeout(phase): a client cut at the
    deadline, phase "headers" or "body"; on_open(n): the number of open connections changed."""

    max_connections: int = 256
    request_timeout: float = 30.0
    open: int = 0
    on_refused: Callable[[], None] = field(default=lambda: None, repr=False)
    on_timeout: Callable[[str], None] = field(default=lambda phase: None, repr=False)
    on_open: Callable[[int], None] = field(default=lambda n: None, repr=False)


def raw_response(status: int, reason: str, message: str, extra: str = "") -> bytes:
    """A complete HTTP/1.1 error answer, {"error": message}, that closes the connection."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode("ascii") + body


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request deadline and a connection bound (module doc)."""

    limits: ConnectionLimits = ConnectionLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = self.limits.open >= self.limits.max_connections
        if self._refused:
            self._refuse(transport)
            return
        self.limits.open += 1
        self.limits.on_open(self.limits.open)
        super().connection_made(transport)
        self._arm()  # the first request's clock starts with the connection

    def _refuse(self, transport: asyncio.Transport) -> None:
        """503 at once; then half-close and drop what the client sends (closing with unread
        bytes would reset the connection and could lose the 503), closed after a linger."""
        self.transport = transport
        limit = self.limits.max_connections
        msg = f"server busy: {limit} connections open (--max-connections {limit})"
        transport.write(raw_response(503, "Service Unavailable", msg, "retry-after: 1\r\n"))
        if transport.can_write_eof():
            transport.write_eof()
        self.loop.call_later(REFUSED_LINGER_S, transport.close)
        self.limits.on_refused()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._disarm()
        self.limits.open -= 1
        self.limits.on_open(self.limits.open)
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:
        if self._refused:
            self.transport.close()
        return None

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        self._check()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._check()  # a pipelined next request may already be partly here

    def _check(self) -> None:
        """Deadline on while a request is partly received; off once it is complete (or
        between requests, when only uvicorn's keep-alive timer runs)."""
        state = self.conn.their_state
        if state is h11.SEND_BODY or (state is h11.IDLE and self.conn.trailing_data[0]):
            self._arm()
        elif state is not h11.IDLE or self._deadline is not None and self._between_requests():
            self._disarm()

    def _between_requests(self) -> bool:
        """IDLE, nothing buffered, and at least one response sent: keep-alive idle time."""
        return self.cycle is not None and self.cycle.response_complete

    def _arm(self) -> None:
        if self._deadline is None:
            timeout = self.limits.request_timeout
            self._deadline = self.loop.call_later(timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        """The deadline passed with the request incomplete: 408 (unless an answer has been
        started already, e.g. an early 413), then close."""
        self._deadline = None
        if self.transport.is_closing():
            return
        phase = "headers" if self.conn.their_state is h11.IDLE else "body"
        self.limits.on_timeout(phase)
        cycle = self.cycle if phase == "body" else None
        if cycle is None or not cycle.response_started:
            t = self.limits.request_timeout
            msg = f"request {phase} not received within {t:g} s (--request-timeout-s)"
            self.transport.write(raw_response(408, "Request Timeout", msg))
        if cycle is not None:
            cycle.disconnected = True  # the application's reads end, its answer is dropped
            cycle.message_event.set()
        self.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[LimitedH11Protocol]:
    """A protocol class for `uvicorn.Config(http=...)` bound to these limits."""
    return type("LimitedH11", (LimitedH11Protocol,), {"limits": limits})

"""uvicorn's httptools protocol with the deadlines and limits uvicorn does not have.

uvicorn times out a keep-alive connection only after a response, and caps connections by
answering 503 to everyone once the cap is reached, so a client holding a thousand connections
with half-sent headers holds the service (the "slowloris" attack). Here every connection is,
at any time, in one phase with its own deadline:

- ``idle``: open without a request (fresh, or between keep-alive requests), ``idle_timeout``;
- ``head``: from a request's first byte to its last header, ``header_timeout``;
- ``body``: until the body's last byte, ``body_timeout`` + its length at ``body_min_rate``;
- ``app``: the request is with the app, which has its own ``--timeout``; no deadline here.

One timer a second closes what is overdue (a ``408`` first when that cannot cut a response
short), so a request costs a few attribute writes rather than timers of its own. At the
connection cap the oldest connection that is idle or still sending its head is closed to make
room for the new one: waiting clients cannot lock out a client that sends its request at once.
Request targets and heads beyond their limits are answered ``414`` and ``431`` while they are
still arriving, so no buffer grows with what a client sends (httptools buffers a header line
until it is complete: the bytes of a head are counted as they arrive, not once parsed).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .limits import ConnectionLimits, LimitStats
from .problems import PROBLEM_JSON, RETRY_AFTER_SECONDS, RETRY_LATER, STATUS, problem_body

IDLE, HEAD, BODY, APP = "idle", "head", "body", "app"
TIMED_OUT = {IDLE: "idle_timeout", HEAD: "header_timeout", BODY: "body_timeout"}
SWEEP_PERIOD = 1.0  # seconds between looks for overdue connections: deadlines are that coarse
MAX_PIPELINED = 16  # requests queued behind the one being answered (HTTP/1.1 pipelining)


class Connections:
    """The open connections of one server: who waits, since when, and until when."""

    def __init__(self, limits: ConnectionLimits, stats: LimitStats, max_body: int) -> None:
        self.limits = limits
        self.stats = stats
        self.max_body = max_body  # a body's deadline is scaled to at most this length
        self.open: set[GuardedProtocol] = set()
        # Connections idle or sending a head, oldest phase first: the ones to evict at the cap.
        self.waiting: dict[GuardedProtocol, None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def admit(self, connection: GuardedProtocol) -> bool:
        """Take a new connection, closing the oldest waiting one at the cap; False when every
        connection is busy with a request (the new one is then refused)."""
        if len(self.open) >= self.limits.max_connections:
            oldest = next(iter(self.waiting), None)
            if oldest is None:
                return False
            oldest.close_for("evicted")
        self.open.add(connection)
        self.stats.open = len(self.open)
        return True

    def forget(self, connection: GuardedProtocol) -> None:
        self.open.discard(connection)
        self.waiting.pop(connection, None)
        self.stats.open = len(self.open)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Look for overdue connections every :data:`SWEEP_PERIOD` until :meth:`stop`."""
        self._timer = loop.call_later(SWEEP_PERIOD, self._sweep, loop)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = loop.call_later(SWEEP_PERIOD, self._sweep, loop)  # first: come what may
        now = time.monotonic()
        for connection in [c for c in self.open if 0 < c.deadline < now]:
            connection.close_for(TIMED_OUT[connection.phase])


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a request answered with an error."""


class GuardedProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection under :class:`Connections`' deadlines and limits.

    A subclass per server binds :attr:`registry` (uvicorn makes protocols from a class).
    """

    registry: ClassVar[Connections]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = self.registry.limits
        self.phase = IDLE
        self.deadline = 0.0  # monotonic; 0: none
        self.head_size = 0  # bytes received while the head was still incomplete
        self.line_size = 0  # bytes of the request target and the complete header lines
        self.header_count = 0
        self.body_length = -1  # the Content-Length, -1 when none (chunked, or no body)
        self.refusal: tuple[str, str] | None = None

    # -- phases ---------------------------------------------------------------------------------

    def _wait(self, phase: str, seconds: float) -> None:
        self.phase = phase
        self.deadline = time.monotonic() + seconds
        waiting = self.registry.waiting
        waiting.pop(self, None)
        if self.cycle is None or self.cycle.response_complete:
            # To the end: the newest waiter is the last evicted. A connection still answering
            # an earlier request (a pipelined head arriving) is not evicted at all.
            waiting[self] = None

    def close_for(self, reason: str) -> None:
        """Close the connection, counted under ``reason``. A request cut short is answered
        first (408, or 503 when evicted) unless a response is already under way on it; an
        idle connection is closed silently, as HTTP expects of keep-alive."""
        if self.transport.is_closing():
            return
        cycle = self.cycle  # the newest request whose head is complete
        if self.pipeline:
            cut_short = False  # answers are still due on it, in order
        elif self.phase == HEAD:
            cut_short = cycle is None or cycle.response_complete
        else:
            cut_short = self.phase == BODY and cycle is not None and not cycle.response_started
        if cut_short and reason == "evicted":
            self._answer("overloaded", "too many connections: this unfinished request made room")
        elif cut_short:
            self._answer("request_timeout", "the request did not arrive in time")
        self.registry.stats.close(reason)
        self.registry.forget(self)
        self.transport.close()

    def _answer(self, code: str, detail: str) -> None:
        """Write a problem and close, below the app (no request has reached it)."""
        status, body = problem_body(code, detail)
        head = [
            f"HTTP/1.1 {status} {STATUS[code][1]}",
            f"content-type: {PROBLEM_JSON}",
            f"content-length: {len(body)}",
            "connection: close",
        ]
        if code in RETRY_LATER:
            head.append(f"retry-after: {RETRY_AFTER_SECONDS}")
        self.transport.write("\r\n".join(head).encode() + b"\r\n\r\n" + body)

    def _refuse(self, code: str, reason: str, detail: str) -> None:
        if self.transport.is_closing():
            return
        self._answer(code, detail)
        self.registry.stats.close(reason)
        self.registry.forget(self)
        self.transport.close()

    def _stop(self, code: str, reason: str) -> None:
        self.refusal = (code, reason)
        raise _Refused

    # -- the transport --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.registry.admit(self):
            self.registry.stats.close("refused")
            self._answer("overloaded", "every connection is busy with a request; retry shortly")
            transport.close()
            return
        self._wait(IDLE, self.limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if self.refusal is not None:
                code, reason = self.refusal
                self._refuse(code, reason, f"{STATUS[code][1]} (limits: {self._limits_text()})")
                return
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # the gateway serves no WebSocket
        if self.phase == HEAD:
            # This whole chunk is part of a head still incomplete, partly buffered in httptools.
            self.head_size += len(data)
            if self.head_size > self.limits.max_header_size:
                self._refuse("headers_too_large", "head_too_large", self._limits_text())

    def _limits_text(self) -> str:
        limits = self.limits
        return (
            f"request target {limits.max_url_length} bytes, request line and headers "
            f"{limits.max_header_size} bytes, {limits.max_headers} header lines"
        )

    # -- parser callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_size = self.line_size = self.header_count = 0
        self.body_length = -1
        self._wait(HEAD, self.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self.line_size += len(url)
        if self.line_size > self.limits.max_url_length:
            self._stop("uri_too_long", "url_too_long")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        self.line_size += len(name) + len(value) + 4  # ": " and CRLF
        if (
            self.header_count > self.limits.max_headers
            or self.line_size > self.limits.max_header_size
        ):
            self._stop("headers_too_large", "head_too_large")
        if len(name) == 14 and name.lower() == b"content-length" and value.isdigit():
            self.body_length = int(value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.registry.waiting.pop(self, None)
        self.phase = BODY
        max_body = self.registry.max_body
        length = self.body_length if 0 <= self.body_length <= max_body else max_body
        self.deadline = time.monotonic() + self.limits.body_deadline(length)
        if len(self.pipeline) > MAX_PIPELINED:
            self.close_for("too_many_pipelined")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self.phase == BODY:
            self.phase = APP
            self.deadline = 0.0

    def on_response_complete(self) -> None:
        # uvicorn's, without its keep-alive timer: the idle deadline below replaces it.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self.phase == APP:
            self._wait(IDLE, self.limits.idle_timeout)
        elif self.phase == HEAD:
            self.registry.waiting[self] = None  # answered; now only a head is pending


def guarded_protocol(connections: Connections) -> type[GuardedProtocol]:
    """The protocol class uvicorn makes each connection of one server from."""
    return type("GatewayProtocol", (GuardedProtocol,), {"registry": connections})

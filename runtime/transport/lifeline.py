"""What happens to a NATS connection after it is made: reconnects, their log lines, its end.

nats-py reports trouble through callbacks and, by default, logs a traceback for every failed
reconnect attempt. A :class:`Lifeline` is the set of callbacks the runtime connects with instead:

- each reconnect attempt is one structlog line (``nats_reconnecting``: attempt, server, wait, the
  last error), with an exponential back-off between attempts chosen here through nats-py's
  ``reconnect_to_server_handler``, and no traceback;
- a permissions violation fails the request the server refused at once
  (:mod:`runtime.transport.refusals`), and is a warning line only when nothing waited for it;
- other errors outside reconnecting (a slow consumer) are one warning line;
- when the connection closes for good without the runtime closing it (reconnect attempts used up,
  or the server closed it, e.g. after a payload over its ``max_payload``), :attr:`closed` is set,
  so a long-running process can stop and exit non-zero instead of living on without a connection.

The lifeline of a connection is found with :func:`lifeline_of`.
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import ParseResult, urlparse

import anyio
from nats.aio.client import Client as NATS

from ..backoff import Backoff
from ..log import get_logger
from .refusals import Connection

log = get_logger("runtime.transport.lifeline")

RECONNECT_BACKOFF = Backoff(first=0.25, maximum=5.0, jitter=0.2)  # before each reconnect attempt

_LIFELINES: weakref.WeakKeyDictionary[NATS, Lifeline] = weakref.WeakKeyDictionary()


def server_label(url: str | ParseResult) -> str:
    """A server's address for messages and logs: scheme, host and port, never credentials."""
    parsed = urlparse(url) if isinstance(url, str) else url
    host = parsed.hostname or "?"
    return f"{parsed.scheme or 'nats'}://{host}" + (f":{parsed.port}" if parsed.port else "")


def servers_label(url: str) -> str:
    """The addresses of a comma-separated server list, as :func:`server_label` gives each."""
    return ",".join(server_label(u.strip()) for u in url.split(",") if u.strip())


# What the server says when it refuses a connection's user, password or credentials (not its
# 'Authentication Timeout': a client too slow to send them may be let in on the next attempt).
_REFUSED_CREDENTIALS = re.compile(
    r"authorization violation|authorization failed|authentication (expired|revoked)", re.I
)


def refuses_credentials(error: str) -> bool:
    """Whether ``error`` (from :func:`describe`) is the server refusing the credentials."""
    return _REFUSED_CREDENTIALS.search(error) is not None


def describe(exc: BaseException) -> str:
    """One line for an error nats-py reports (many of its errors have an empty message)."""
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()  # "connection refused", not asyncio's wording
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


class Lifeline:
    """The callbacks one connection is made with, and what they learned about it."""

    def __init__(self, max_reconnects: int) -> None:
        self.max_reconnects = max_reconnects
        self.closed = anyio.Event()  # set when the connection closed for good, not by us
        self.last_error: str | None = None
        self.connected = False  # the first connect succeeded
        self.closing = False  # the runtime itself is closing the connection
        self.reconnecting = False
        self.attempt = 0
        self.on_refused: Callable[[], Any] | None = None  # the first connect's credentials
        self._nc: weakref.ref[NATS] | None = None

    def attach(self, nc: NATS) -> None:
        _LIFELINES[nc] = self
        self._nc = weakref.ref(nc)

    def callbacks(self) -> dict[str, Any]:
        """The keyword arguments of ``nats.aio.client.Client.connect`` this lifeline handles."""
        return {
            "error_cb": self.on_error,
            "disconnected_cb": self.on_disconnected,
            "reconnected_cb": self.on_reconnected,
            "closed_cb": self.on_closed,
            "reconnect_to_server_handler": self.choose_server,
            "max_reconnect_attempts": self.max_reconnects,
        }

    async def on_error(self, exc: Exception) -> None:
        nc = self._nc() if self._nc is not None else None
        if isinstance(nc, Connection) and nc.refused(exc):
            log.debug("nats_permission_denied", error=describe(exc))  # its waiter reports it
            return
        self.last_error = describe(exc)
        if not self.connected and self.on_refused and refuses_credentials(self.last_error):
            self.on_refused()  # retrying cannot help
        if self.connected and not self.reconnecting and not self.closing:
            log.warning("nats_error", error=self.last_error)

    async def on_disconnected(self) -> None:
        if self.connected and not self.closing and not self.reconnecting:
            self.reconnecting = True
            log.warning("nats_disconnected", error=self.last_error)

    async def on_reconnected(self) -> None:
        log.info("nats_reconnected", attempts=self.attempt)
        self.reconnecting = False
        self.attempt = 0
        self.last_error = None

    async def on_closed(self) -> None:
        if not self.connected or self.closing:
            return
        nc = self._nc() if self._nc is not None else None
        cause = nc.last_error if nc is not None else None  # e.g. the server's -ERR
        if cause is not None:
            self.last_error = describe(cause)
        if self.last_error is None:
            log.info("nats_closed")  # closed by its owner, outside the runtime
        else:
            log.error("nats_connection_closed", error=self.last_error)
        self.closed.set()

    def choose_server(self, servers: list[Any], server_info: dict[str, Any]) -> tuple[Any, float]:
        """Pick the least-tried server and how long to wait first (nats-py calls this before
        every reconnect attempt)."""
        self.attempt += 1
        server = min(servers, key=lambda s: s.reconnects)
        wait = round(RECONNECT_BACKOFF.delay(self.attempt), 3)
        log.warning(
            "nats_reconnecting",
            attempt=self.attempt,
            max_attempts=self.max_reconnects if self.max_reconnects >= 0 else None,
            server=server_label(server.uri),
            wait=wait,
            error=self.last_error,
        )
        return server, wait


def lifeline_of(nc: NATS) -> Lifeline | None:
    """The lifeline a connection was made with by :mod:`runtime.transport.connection`."""
    return _LIFELINES.get(nc)


async def wait_closed(nc: NATS) -> None:
    """Block until ``nc`` closes for good without the runtime closing it (never, for a
    connection made elsewhere)."""
    lifeline = lifeline_of(nc)
    if lifeline is None:
        await anyio.sleep_forever()
        return
    await lifeline.closed.wait()

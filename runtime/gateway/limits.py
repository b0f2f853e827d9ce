"""What the gateway allows a client: how long it may take to send a request, how large the
request's head may be, how many connections stay open, how many requests one client may have
in flight; and the per-client limit itself (:class:`ClientLimiter`).

The deadlines and the sizes are enforced where the bytes arrive (:mod:`.protocol`), before any
request reaches the app: a client that sends slowly, or sends nothing, holds a connection only
for a bounded time, so whoever opens many connections cannot hold the service.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ConfigurationError
from .problems import problem


@dataclass(frozen=True)
class ConnectionLimits:
    """Deadlines and sizes of the gateway's connections and requests (see ``cqrs gateway``)."""

    max_connections: int = 1024  # open at once; at the cap the oldest waiting one is closed
    header_timeout: float = 10.0  # seconds from a request's first byte to its last header
    body_timeout: float = 10.0  # seconds for a body, plus its length at body_min_rate
    body_min_rate: int = 16 * 1024  # bytes a second a body must at least arrive at
    idle_timeout: float = 5.0  # seconds a connection may wait without a request (keep-alive)
    max_header_size: int = 16 * 1024  # bytes of request line and headers (431 beyond)
    max_headers: int = 100  # header lines (431 beyond)
    max_url_length: int = 8 * 1024  # bytes of the request target (414 beyond)
    max_in_flight_per_client: int = 128  # per token, or per address without tokens (429 beyond)

    def __post_init__(self) -> None:
        positive = {
            "max_connections": self.max_connections,
            "header_timeout": self.header_timeout,
            "body_timeout": self.body_timeout,
            "body_min_rate": self.body_min_rate,
            "idle_timeout": self.idle_timeout,
            "max_header_size": self.max_header_size,
            "max_headers": self.max_headers,
            "max_url_length": self.max_url_length,
            "max_in_flight_per_client": self.max_in_flight_per_client,
        }
        bad = [name for name, value in positive.items() if not value > 0]
        if bad:
            raise ConfigurationError(f"gateway limit {bad[0]} must be positive")

    def body_deadline(self, length: int) -> float:
        """Seconds a body of ``length`` bytes may take to arrive."""
        return self.body_timeout + length / self.body_min_rate


@dataclass
class LimitStats:
    """What the limits did, counted in plain Python (read by the metrics at scrape time)."""

    closed: dict[str, int] = field(default_factory=dict)  # connections closed, by reason
    open: int = 0  # connections open now
    limited: int = 0  # requests answered 429 by the per-client limit

    def close(self, reason: str) -> None:
        self.closed[reason] = self.closed.get(reason, 0) + 1


# The routes that spend NATS requests; the others answer from the gateway itself.
LIMITED_PREFIXES = ("/commands/", "/queries/")


class ClientLimiter:
    """ASGI wrapper that answers ``429`` (``busy``, with ``Retry-After``) to a client that
    already has ``limit`` commands and queries in flight, so one client cannot take every
    connection's worth of NATS requests.

    A client is its bearer token when tokens are required (not yet checked: an invalid one is
    answered 401 at once and costs no NATS request) and its address otherwise;
    behind a reverse proxy that address is the one the proxy puts in ``X-Forwarded-For``, which
    uvicorn honours for the proxies in ``FORWARDED_ALLOW_IPS`` (loopback by default). Only
    clients with a request in flight are remembered, so the table is bounded by the connections.
    """

    def __init__(self, app: ASGIApp, limit: int, by_token: bool, stats: LimitStats) -> None:
        self.app = app
        self.limit = limit
        self.by_token = by_token
        self.stats = stats
        self.in_flight: dict[object, int] = {}
        self.refusal = problem(
            "busy",
            f"this client already has {limit} requests in flight; retry when one is answered",
            {"max_in_flight_per_client": limit},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        key = self._client(scope)
        count = self.in_flight.get(key, 0)
        if count >= self.limit:
            self.stats.limited += 1
            await self.refusal(scope, receive, send)
            return
        self.in_flight[key] = count + 1
        try:
            await self.app(scope, receive, send)
        finally:
            left = self.in_flight[key] - 1
            if left:
                self.in_flight[key] = left
            else:
                del self.in_flight[key]

    def _client(self, scope: Scope) -> object:
        if self.by_token:
            for name, value in scope["headers"]:
                if name == b"authorization":
                    # The token as Tokens.authenticate reads it, so that spelling the scheme
                    # or the spaces differently does not make another client of the same token.
                    return value.partition(b" ")[2].strip()
            return b""
        client = scope.get("client")
        return client[0] if client else ""

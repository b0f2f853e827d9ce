"""The gateway's limits: their checks, and the per-client cap on requests in flight."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import anyio
import pytest
from prometheus_client import generate_latest
from typer.testing import CliRunner

from runtime.cli import app as cli
from runtime.errors import ConfigurationError
from runtime.gateway.limits import ClientLimiter, ConnectionLimits, LimitStats
from runtime.observability.metrics import Metrics


def test_a_body_deadline_grows_with_its_length_at_the_minimum_rate() -> None:
    """A body may take the base timeout plus its length at the minimum rate."""
    limits = ConnectionLimits(body_timeout=10, body_min_rate=1024)
    assert limits.body_deadline(0) == 10
    assert limits.body_deadline(4096) == 14


def test_a_limit_must_be_positive() -> None:
    """A zero or negative limit is a configuration error naming it."""
    with pytest.raises(ConfigurationError, match="header_timeout"):
        ConnectionLimits(header_timeout=0)


class Held:
    """An ASGI app whose requests stay in flight until released."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.entered = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def scope(
    path: str, token: bytes | None = None, client: str = "192.0.2.1", scheme: bytes = b"Bearer "
) -> dict[str, Any]:
    headers = [(b"authorization", scheme + token)] if token else []
    return {"type": "http", "path": path, "headers": headers, "client": (client, 50000)}


async def call(limiter: ClientLimiter, request: dict[str, Any]) -> int:
    """The status the limiter's app answers ``request`` with."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await limiter(request, receive, send)
    return statuses[0]


async def test_a_token_at_its_limit_is_answered_429_and_another_token_is_not() -> None:
    """With tokens, the cap is per token: the same token past it gets 429, another passes."""
    app, stats = Held(), LimitStats()
    limiter = ClientLimiter(app, 2, by_token=True, stats=stats)
    statuses: list[int] = []

    async def one(token: bytes) -> None:
        statuses.append(await call(limiter, scope("/commands/a/1/b", token)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, b"t1")
        tg.start_soon(one, b"t1")
        await anyio.wait_all_tasks_blocked()
        assert await call(limiter, scope("/queries/p/q", b"t1")) == 429
        assert await call(limiter, scope("/queries/p/q", b"t1 ", scheme=b"bearer   ")) == 429
        tg.start_soon(one, b"t2")
        await anyio.wait_all_tasks_blocked()
        assert app.entered == 3
        app.release.set()
    assert statuses == [200, 200, 200]
    assert stats.limited == 2
    assert limiter.in_flight == {}


async def test_routes_that_spend_no_nats_request_are_not_limited() -> None:
    """/healthz and the like pass however many requests the client has in flight."""
    app = Held()
    app.release.set()
    limiter = ClientLimiter(app, 1, by_token=False, stats=LimitStats())
    limiter.in_flight["192.0.2.1"] = 1
    assert await call(limiter, scope("/healthz")) == 200
    assert await call(limiter, scope("/commands/a/1/b")) == 429
    assert await call(limiter, scope("/commands/a/1/b", client="192.0.2.2")) == 200


def test_the_limits_are_options_of_cqrs_gateway() -> None:
    """Each deadline and limit is an option of `cqrs gateway`, with its environment variable."""
    text = CliRunner().invoke(cli, ["gateway", "--help"], env={"COLUMNS": "300"}).output
    for field in fields(ConnectionLimits):
        option = "--" + field.name.replace("_", "-")
        assert option in text, option
        assert "CQRS_GATEWAY_" + field.name.upper() in text, field.name


def test_what_the_limits_did_is_in_the_metrics() -> None:
    """Closed connections by reason, open connections and 429s are series of the process."""
    registry = Metrics()
    stats = LimitStats(closed={"header_timeout": 2, "evicted": 5}, open=3, limited=1)
    registry.watch_gateway(stats)
    text = generate_latest(registry.registry).decode()
    assert 'cqrs_http_connections_closed_total{reason="header_timeout"} 2.0' in text
    assert 'cqrs_http_connections_closed_total{reason="evicted"} 5.0' in text
    assert "cqrs_http_open_connections 3.0" in text
    assert "cqrs_http_client_limited_total 1.0" in text
    registry.unwatch_gateway(stats)
    assert "cqrs_http_open_connections 3.0" not in generate_latest(registry.registry).decode()

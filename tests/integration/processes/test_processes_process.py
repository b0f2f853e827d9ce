"""``cqrs processes`` as a real process: SIGKILLed mid-reaction, and a server restart with
timers pending. Each case checks that every command went out exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
from nats.aio.client import Client as NATS

from aggregates import AGGREGATES
from runtime import Client, EventStore
from runtime.domain.app import App
from runtime.ops.run import run_app
from runtime.processes.instances import InstanceStore
from runtime.processes.timers import TimerStore
from runtime.transport.embedded import EmbeddedServer

from ..procs import CQRS, TEST_APP, WorkerProcess, wait_until, workers
from ..support import counter

APP = f"{TEST_APP},tests.integration.support:echo,aggregates:PROCESS_MANAGERS"
# Short deliveries and pins, so a killed replica's work is redelivered to the next in seconds.
FAST = ["--ack-wait", "1", "--lease-ttl", "2", "--start", "all"]
LINES = [{"sku": "book", "quantity": 1, "unit_price": "9.90"}]


def processes(tmp_path: Path, url: str, name: str, *managers: str) -> WorkerProcess:
    return WorkerProcess(
        tmp_path / name,
        url,
        user=None,
        command="processes",
        app=APP,
        extra=[*FAST, "--process-managers", ",".join(managers)],
    )


async def types(store: EventStore, aggregate: str, aggregate_id: str) -> list[str]:
    return [e.type for c in await store.history(aggregate, aggregate_id) for e in c.events]


async def outbox_stored(instances: InstanceStore, manager: str, key: str) -> bool:
    return bool((await instances.get(manager, key)).outbox)


async def test_killed_between_receiving_an_event_and_acking_it_sends_once(
    tmp_path: Path, nats_server: EmbeddedServer, nc: NATS, store: EventStore
) -> None:
    """A replica SIGKILLed while its reaction's command waits for a worker leaves the event
    unacknowledged; the next replica sends the same command id, and one echo is stored."""
    client = Client(nc)
    async with run_app(nc, App((counter,)), projections=[]):
        await client.send("counter", "c-1", "add", {"amount": 5})
    instances = InstanceStore(nc)
    await instances.start()
    first = processes(tmp_path, nats_server.url, "p1", "echo")
    second = processes(tmp_path, nats_server.url, "p2", "echo")
    with workers(first):
        await first.wait_ready()
        # No worker serves counters now: the reaction is stored, its command cannot be answered.
        await wait_until(lambda: outbox_stored(instances, "echo", "c-1"), 20, "the outbox")
        first.signal(signal.SIGKILL)
        await first.wait_exit(10)
    async with run_app(nc, App((counter,)), projections=[]):
        with workers(second):
            await second.wait_ready()
            await wait_until(lambda: types(store, "counter", "c-1-echo"), 30, "the echo")
            await wait_until(
                lambda: _no_outbox(instances, "echo", "c-1"), 10, "the outbox to be cleared"
            )
    assert await types(store, "counter", "c-1-echo") == ["counter.added.v1"]


async def test_killed_mid_batch_under_load_sends_every_command_once(
    tmp_path: Path, nats_server: EmbeddedServer, nc: NATS, store: EventStore
) -> None:
    """A replica SIGKILLed while a batch of reactions is being sent (some answered, none of the
    batch acknowledged): after the next replica is done, every event has exactly one echo."""
    client = Client(nc)
    ids = [f"k-{i}" for i in range(120)]
    first = processes(tmp_path, nats_server.url, "p1", "echo")
    second = processes(tmp_path, nats_server.url, "p2", "echo")
    async with run_app(nc, App((counter,)), projections=[]):
        for counter_id in ids:
            await client.send("counter", counter_id, "add", {"amount": 1})
        with workers(first):
            await first.wait_ready()
            await wait_until(lambda: _echoes_at_least(nc, 10), 30, "the first echoes")
            first.signal(signal.SIGKILL)
            await first.wait_exit(10)
        with workers(second):
            await second.wait_ready()
            await wait_until(lambda: _echoes_at_least(nc, len(ids)), 60, "every echo")
    for counter_id in ids:
        assert await types(store, "counter", f"{counter_id}-echo") == ["counter.added.v1"]


async def _echo_count(nc: NATS) -> int:
    info = await nc.jetstream().stream_info("EVENTS", subjects_filter="events.counter.*")
    return sum(1 for subject in (info.state.subjects or {}) if subject.endswith("-echo"))


async def _echoes_at_least(nc: NATS, count: int) -> bool:
    return await _echo_count(nc) >= count


async def test_killed_between_a_timer_firing_and_its_command_being_answered_cancels_once(
    tmp_path: Path, nats_server: EmbeddedServer, nc: NATS, store: EventStore
) -> None:
    """A replica SIGKILLed after the deadline fired but before the cancel was answered: the next
    replica gets the timer again and the order is cancelled exactly once."""
    client = Client(nc)
    env = {"CQRS_ORDER_PAYMENT_TIMEOUT": "1"}
    instances = InstanceStore(nc)
    await instances.start()
    first = processes(tmp_path, nats_server.url, "p1", "payment_deadline")
    second = processes(tmp_path, nats_server.url, "p2", "payment_deadline")
    first.env, second.env = env, env
    with workers(first):
        await first.wait_ready()
        async with run_app(nc, App(AGGREGATES), projections=[]):
            await client.send("order", "o-1", "create", {"user_id": "u-1", "lines": LINES})
            await wait_until(lambda: _has_timer(instances, "o-1"), 20, "the deadline timer")
        # The worker is gone when the deadline passes: the cancel waits in the outbox.
        key = "o-1"
        await wait_until(lambda: outbox_stored(instances, "payment_deadline", key), 20, "outbox")
        first.signal(signal.SIGKILL)
        await first.wait_exit(10)
    async with run_app(nc, App(AGGREGATES), projections=[]):
        with workers(second):
            await second.wait_ready()
            await wait_until(
                lambda: _no_outbox(instances, "payment_deadline", key), 30, "the cancel"
            )
    assert await types(store, "order", "o-1") == ["order.created.v2", "order.cancelled.v1"]
    commits = await store.history("order", "o-1")
    assert commits[-1].events[0].data["reason"] == "payment timeout"


async def test_timers_pending_across_a_server_restart_still_fire_once(
    tmp_path: Path, nats_server: EmbeddedServer, nc: NATS, store: EventStore
) -> None:
    """Deadlines pending while the nats-server restarts on the same store fire afterwards: each
    unpaid order is cancelled once, the paid one not at all."""
    client = Client(nc)
    replica = processes(tmp_path, nats_server.url, "p1", "payment_deadline")
    replica.env = {"CQRS_ORDER_PAYMENT_TIMEOUT": "4"}
    unpaid = [f"o-{i}" for i in range(5)]
    with workers(replica):
        await replica.wait_ready()
        async with run_app(nc, App(AGGREGATES), projections=[]):
            for order_id in [*unpaid, "paid"]:
                await client.send("order", order_id, "create", {"user_id": "u", "lines": LINES})
            await client.send("order", "paid", "update_status", {"status": "paid"})
            timers = TimerStore(nc)
            await wait_until(lambda: _equals(timers.pending("payment_deadline"), 5), 20, "timers")
        await nc.close()
        nats_server.stop()
        nats_server.start()
        await nats_server.wait_ready()
        import nats

        nc2 = await nats.connect(nats_server.url)
        try:
            store2 = EventStore(nc2)
            await store2.start()
            async with run_app(nc2, App(AGGREGATES), projections=[]):
                for order_id in unpaid:
                    await wait_until(
                        lambda o=order_id: _cancelled(store2, o), 30, f"{order_id} cancelled"
                    )
                await wait_until(
                    lambda: _equals(TimerStore(nc2).pending("payment_deadline"), 0), 10, "none"
                )
            for order_id in unpaid:
                assert (await types(store2, "order", order_id)).count("order.cancelled.v1") == 1
            assert await types(store2, "order", "paid") == [
                "order.created.v2",
                "order.status_updated.v1",
            ]
            await store2.stop()
        finally:
            await nc2.close()
        assert replica.process is not None and replica.process.poll() is None


async def _no_outbox(instances: InstanceStore, manager: str, key: str) -> bool:
    instance = await instances.get(manager, key)
    return instance.revision > 0 and not instance.outbox


async def _has_timer(instances: InstanceStore, key: str) -> bool:
    return bool((await instances.get("payment_deadline", key)).timers)


async def _equals(count: object, expected: int) -> bool:
    return await count == expected  # type: ignore[misc]


async def _cancelled(store: EventStore, order_id: str) -> bool:
    return "order.cancelled.v1" in await types(store, "order", order_id)


async def test_a_processes_replica_is_healthy_and_stops_gracefully(
    tmp_path: Path, nats_server: EmbeddedServer, nc: NATS
) -> None:
    """`cqrs health` passes against a running `cqrs processes`; SIGTERM withdraws it from its
    ready file and it exits 0."""
    replica = processes(tmp_path, nats_server.url, "p1", "payment_deadline")
    with workers(replica):
        await replica.wait_ready()
        with anyio.fail_after(30):
            health = await anyio.run_process(
                [CQRS, "health", "--ready-file", str(replica.ready_file)],
                env={**os.environ, "NATS_URL": nats_server.url},
                check=False,
            )
        assert health.returncode == 0, health.stderr
        replica.signal(signal.SIGTERM)
        assert await replica.wait_exit(30) == 0
    assert not replica.ready_file.exists()

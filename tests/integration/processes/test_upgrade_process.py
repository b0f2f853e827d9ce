"""``cqrs processes`` started on a deployment that ran the release before partitions: the
timers it scheduled and the events its consumer had not acknowledged are not lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.js import api

from aggregates import AGGREGATES
from aggregates.payment_deadline import TIMER, AwaitingPayment, payment_deadline
from runtime import Client, EventStore
from runtime.domain.app import App
from runtime.ops.run import run_app
from runtime.processes.instances import Instance, InstanceStore
from runtime.processes.timers import H_TIMER_DUE, H_TIMER_ID, TimerStore, rfc3339
from runtime.transport.embedded import EmbeddedServer

from ..procs import WorkerProcess, wait_until, workers
from .test_processes_process import APP, LINES, types

MANAGER = "payment_deadline"


async def _old_deployment(nc: NATS, client: Client) -> None:
    """What the old release left: o-1 reacted to (its instance stored, acknowledged by the old
    consumer) with its deadline scheduled in the old form, o-2 created but not yet delivered."""
    js = nc.jetstream()
    await TimerStore(nc).start()
    await client.send("order", "o-1", "create", {"user_id": "u", "lines": LINES})
    old = "cqrs-pm-payment_deadline"
    await js.add_consumer(
        "EVENTS",
        api.ConsumerConfig(
            durable_name=old,
            filter_subject="events.order.*",
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
        ),
    )
    sub = await js.pull_subscribe_bind(old, stream="EVENTS")
    [msg] = await sub.fetch(1, timeout=5)
    instances = InstanceStore(nc)
    await instances.start()
    state = payment_deadline.encode_state(AwaitingPayment(open=True))
    timers = {TIMER: "old-deadline-o-1"}
    instance = Instance(state=state, position=(msg.metadata.sequence.stream, 0), timers=timers)
    await instances.put(MANAGER, "o-1", instance, payment_deadline.state_version)
    await msg.ack_sync()
    await sub.unsubscribe()
    # The old pinned consumer of fired timers, as the old release created it.
    config = {
        "durable_name": "cqrs-pm-payment_deadline-timers",
        "filter_subject": "timers.fired.payment_deadline.*.*",
        "ack_policy": "explicit",
        "deliver_policy": "all",
        "priority_groups": ["pm"],
        "priority_policy": "pinned_client",
        "priority_timeout": 5_000_000_000,
    }
    body = json.dumps({"stream_name": "CQRS_TIMERS", "config": config}).encode()
    reply = await nc.request(
        "$JS.API.CONSUMER.CREATE.CQRS_TIMERS.cqrs-pm-payment_deadline-timers", body, timeout=5
    )
    assert "error" not in json.loads(reply.data), reply.data
    # o-1's deadline, scheduled as the old release did: it fires to the old subject.
    due = rfc3339(datetime.now(UTC) + timedelta(seconds=1))
    headers = {
        "Nats-Schedule": f"@at {due}",
        "Nats-Schedule-Target": f"timers.fired.{MANAGER}.o-1.{TIMER}",
        "Nats-Rollup": "sub",
        "Nats-Msg-Id": "old-deadline-o-1",
        H_TIMER_ID: "old-deadline-o-1",
        H_TIMER_DUE: due,
    }
    await js.publish(f"timers.schedule.{MANAGER}.o-1.{TIMER}", b"", headers=headers)
    await client.send("order", "o-2", "create", {"user_id": "u", "lines": LINES})


async def _fired_in_old_form(nc: NATS) -> bool:
    info = await nc.jetstream().stream_info(
        "CQRS_TIMERS", subjects_filter=f"timers.fired.{MANAGER}.*.*"
    )
    return bool(info.state.subjects)


async def _has_timer(instances: InstanceStore, key: str) -> bool:
    return bool((await instances.get(MANAGER, key)).timers)


async def test_an_upgraded_deployment_fires_old_timers_and_reacts_to_undelivered_events(
    tmp_path: Path, nats_server: EmbeddedServer, nc: NATS, store: EventStore
) -> None:
    """A timer scheduled (and fired) in the form before partitions reaches its instance, which
    cancels the order once, and an event the old consumer had not delivered is reacted to."""
    client = Client(nc)
    async with run_app(nc, App(AGGREGATES), projections=[]):
        await _old_deployment(nc, client)
        await wait_until(lambda: _fired_in_old_form(nc), 20, "the old-form timer to fire")
        replica = WorkerProcess(
            tmp_path / "p1",
            nats_server.url,
            user=None,
            command="processes",
            app=APP,
            extra=["--ack-wait", "1", "--lease-ttl", "2", "--process-managers", MANAGER],
        )
        # New deadlines far away: o-1 is cancelled only by its old-form timer.
        replica.env = {"CQRS_ORDER_PAYMENT_TIMEOUT": "3600"}
        instances = InstanceStore(nc)
        await instances.start()
        with workers(replica):
            await replica.wait_ready()
            await wait_until(
                lambda: _cancelled(store, "o-1"), 30, "o-1 cancelled by its old-form timer"
            )
            await wait_until(lambda: _has_timer(instances, "o-2"), 30, "o-2's deadline")
    assert await types(store, "order", "o-1") == ["order.created.v2", "order.cancelled.v1"]
    assert await types(store, "order", "o-2") == ["order.created.v2"]
    assert not await _fired_in_old_form(nc)


async def _cancelled(store: EventStore, order_id: str) -> bool:
    return "order.cancelled.v1" in await types(store, "order", order_id)

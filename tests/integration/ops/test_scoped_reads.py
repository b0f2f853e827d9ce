"""Scoped reads: a worker user generated for some aggregates reads only their histories."""

from __future__ import annotations

import nats.errors
import pytest

from aggregates import AGGREGATES
from runtime import Client, run_worker
from runtime.errors import Timeout
from runtime.transport.connection import open_connection
from runtime.transport.consumer_history import ConsumerHistoryReader
from runtime.wire import codec

from ..procs import NatsNode
from .accounts import SCOPED, options, session

ORDER = [a for a in AGGREGATES if a.name == "order"]
LINES = [{"sku": "book", "quantity": 1, "unit_price": "9.90"}]


async def serve_orders(
    node: NatsNode, client: Client, steps: list[tuple[str, str, dict[str, object]]]
) -> int:
    """Run a fresh ``order-worker`` (cold actors: every first command reads the history)."""
    worker_nc = await open_connection(node.url, options("order-worker"))
    try:
        async with run_worker(worker_nc, ORDER, SCOPED):
            version = 0
            for order_id, command, args in steps:
                version = (await client.send("order", order_id, command, args)).version
            return version
    finally:
        await worker_nc.close()


async def test_an_order_worker_serves_orders_across_restarts_with_scoped_reads(
    node: NatsNode,
) -> None:
    """A worker user generated for ``order`` loads order histories after a restart, unrefused."""
    async with session(node, "alice") as alice:
        client = Client(alice.nc, timeout=10)
        created = {"user_id": "u-1", "lines": LINES}
        first = await serve_orders(
            node, client, [("o-1", "create", created), ("o-1", "update_status", {"status": "paid"})]
        )
        assert first == 2
        again = await serve_orders(node, client, [("o-1", "update_status", {"status": "shipped"})])
        assert again == 3  # the restarted worker read both earlier commits
    assert "Violation" not in node.log_tail(100_000)


async def test_an_order_worker_cannot_read_user_history(node: NatsNode) -> None:
    """Neither the stream-wide direct get nor a consumer on another aggregate's events is
    allowed, and the filter-suffixed create refuses a body asking for other subjects."""
    async with session(node, "admin") as admin:
        js = admin.nc.jetstream()
        await js.add_stream(name="EVENTS", subjects=["events.>"], allow_direct=True)
        await js.publish("events.user.u-1", b"[]")
        await js.publish("events.order.o-1", b"[]")
    async with session(node, "order-worker") as worker:
        reader = ConsumerHistoryReader(worker.nc, "EVENTS", timeout=2)
        await reader.start()
        try:
            assert [m.seq for m in await reader.subject_history("events.order.o-1")] == [2]
            with pytest.raises(Timeout):  # denied: no answer comes
                await reader.subject_history("events.user.u-1")
        finally:
            await reader.stop()
        await worker.denied('publish to "$JS.API.DIRECT.GET.EVENTS.events.user.u-1"')
        config = {"name": "c", "filter_subject": "events.user.u-1", "ack_policy": "none"}
        create = {"stream_name": "EVENTS", "config": config, "action": "create"}
        subject = "$JS.API.CONSUMER.CREATE.EVENTS.c.events.user.u-1"
        await worker.nc.publish(subject, codec.dumps(create), reply=worker.nc.new_inbox())
        await worker.denied(f'publish to "{subject}"')
        body = codec.dumps({"seq": 1, "next_by_subj": "events.user.u-1", "batch": 10})
        for subject in ("$JS.API.DIRECT.GET.EVENTS", "$JS.API.STREAM.MSG.GET.EVENTS"):
            with pytest.raises(nats.errors.TimeoutError):
                await worker.nc.request(subject, body, timeout=1)
            await worker.denied(f'publish to "{subject}"')
        for subject in ("$JS.API.CONSUMER.CREATE.EVENTS", "$JS.API.CONSUMER.CREATE.EVENTS.c"):
            await worker.nc.publish(subject, b"{}", reply=worker.nc.new_inbox())
            await worker.denied(f'publish to "{subject}"')
        smuggled = {"filter_subject": "events.user.u-1"}, {"filter_subjects": ["events.user.u-1"]}
        for extra, code in zip(smuggled, (10131, 10137), strict=True):
            config = {"name": "c", "filter_subject": "events.order.o-1", **extra}
            config.update(deliver_subject=worker.nc.new_inbox(), ack_policy="none")
            request = {"stream_name": "EVENTS", "config": config, "action": "create"}
            reply = await worker.nc.request(
                "$JS.API.CONSUMER.CREATE.EVENTS.c.events.order.o-1", codec.dumps(request), 2
            )
            assert codec.loads(reply.data)["error"]["err_code"] == code

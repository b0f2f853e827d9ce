"""A partition consumer's rewind against a real server, for both delivery policies it takes."""

from __future__ import annotations

import anyio
import pytest
from nats.aio.client import Client as NATS

from runtime.errors import Unavailable
from runtime.processes.consumers import PartitionConsumer

from ..procs import wait_until


async def _parts_consumer(
    nc: NATS, *, deliver_all: bool = True, fetch_timeout: float = 5
) -> PartitionConsumer:
    """Partition consumer ``part-0`` of a new stream ``PARTS`` (``parts.>``), bound."""
    await nc.jetstream().add_stream(name="PARTS", subjects=["parts.>"])
    consumer = PartitionConsumer(
        nc,
        stream="PARTS",
        name="part-0",
        subjects=["parts.>"],
        description="a partition",
        deliver_all=deliver_all,
        ack_wait=30,
        max_ack_pending=100,
        fetch_timeout=fetch_timeout,
        ack_all=True,
        timeout=5,
    )
    await consumer.create()
    await consumer.bind()
    return consumer


@pytest.mark.parametrize("deliver_all", [True, False], ids=["all", "new"])
async def test_a_rewind_delivers_again_what_was_not_acknowledged_in_order(
    nc: NATS, deliver_all: bool
) -> None:
    """Messages fetched but not acknowledged come again from the first of them after a rewind,
    also for a consumer that delivers only new messages (the server refuses a reset to a
    given sequence for those)."""
    consumer = await _parts_consumer(nc, deliver_all=deliver_all, fetch_timeout=2)
    js = nc.jetstream()
    for n in range(6):
        await js.publish(f"parts.{n}", str(n).encode())
    first = await consumer.fetch(2)
    await consumer.acknowledge(first)
    given_up = await consumer.fetch(3)  # fetched, then given up unacknowledged
    assert [m.data for m in given_up] == [b"2", b"3", b"4"]
    await consumer.rewind()
    again = await consumer.fetch(10)
    assert [m.data for m in again] == [b"2", b"3", b"4", b"5"]
    await consumer.stop()


async def test_a_waiting_fetch_returns_the_first_delivery_and_later_fetches_the_rest(
    nc: NATS,
) -> None:
    """A fetch waiting on an empty consumer returns with the first delivery, without waiting
    for a full batch; the next fetches return the rest, in order, none lost or redelivered.
    (Deliveries of a request that outlived its fetch: tests/integration/transport/test_pull.py.)"""
    consumer = await _parts_consumer(nc)
    js = nc.jetstream()
    got: list[bytes] = []

    async def first_fetch() -> None:
        got.extend(m.data for m in await consumer.fetch(10))

    async with anyio.create_task_group() as tg:
        tg.start_soon(first_fetch)

        async def request_waiting() -> bool:
            return bool((await js.consumer_info("PARTS", "part-0")).num_waiting)

        await wait_until(request_waiting, 10, "the first fetch's request to wait")
        await js.publish("parts.0", b"0")
    assert got == [b"0"]
    for n in range(1, 8):
        await js.publish(f"parts.{n}", str(n).encode())
    while len(got) < 8:
        msgs = await consumer.fetch(3)
        assert 0 < len(msgs) <= 3
        got.extend(m.data for m in msgs)
    assert got == [str(n).encode() for n in range(8)]
    info = await js.consumer_info("PARTS", "part-0")
    assert info.delivered.consumer_seq == 8 and info.num_redelivered == 0
    await consumer.stop()


async def test_a_fetch_from_a_deleted_consumer_fails_as_unavailable(nc: NATS) -> None:
    consumer = await _parts_consumer(nc)
    await nc.jetstream().delete_consumer("PARTS", "part-0")
    with pytest.raises(Unavailable):
        await consumer.fetch(5)
    await consumer.stop()

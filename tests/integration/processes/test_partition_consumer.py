"""A partition consumer's rewind against a real server, for both delivery policies it takes."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NATS

from runtime.processes.consumers import PartitionConsumer


@pytest.mark.parametrize("deliver_all", [True, False], ids=["all", "new"])
async def test_a_rewind_delivers_again_what_was_not_acknowledged_in_order(
    nc: NATS, deliver_all: bool
) -> None:
    """Messages fetched but not acknowledged come again from the first of them after a rewind,
    also for a consumer that delivers only new messages (the server refuses a reset to a
    given sequence for those)."""
    js = nc.jetstream()
    await js.add_stream(name="PARTS", subjects=["parts.>"])
    consumer = PartitionConsumer(
        nc,
        stream="PARTS",
        name="part-0",
        subjects=["parts.>"],
        description="a partition",
        deliver_all=deliver_all,
        ack_wait=30,
        max_ack_pending=100,
        fetch_timeout=2,
        ack_all=True,
        timeout=5,
    )
    await consumer.create()
    await consumer.bind()
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

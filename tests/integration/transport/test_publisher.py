"""JetStream publishes with their acks routed back on one subscription, against a real server."""

from __future__ import annotations

import anyio
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from runtime import StreamSettings, Timeout
from runtime.transport.publisher import NoStream, Publisher, Refused
from runtime.transport.streams import ensure_event_stream
from runtime.wire.envelope import H_EXPECTED_LAST_SUBJECT_SEQ, H_MSG_ID

WRONG_LAST_SEQUENCE = 10071


@pytest.fixture
async def publisher(nc: NATS) -> Publisher:
    await ensure_event_stream(nc.jetstream(), StreamSettings())
    return Publisher(nc, timeout=5.0)


async def test_each_publish_gets_its_own_ack(publisher: Publisher) -> None:
    """Concurrent publishes each return the sequence JetStream stored their message at."""
    acks: dict[int, int] = {}

    async def one(i: int) -> None:
        ack = await publisher.publish(f"events.user.u-{i}", b"[]", {H_MSG_ID: f"m-{i}"})
        acks[i] = ack.seq

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(one, i)
    assert sorted(acks.values()) == list(range(1, 51))
    stored = await publisher.nc.jetstream().get_last_msg("EVENTS", "events.user.u-7")
    assert stored.seq == acks[7]


async def test_a_duplicate_is_acknowledged_with_the_original_sequence(publisher: Publisher) -> None:
    """A second publish with the same Nats-Msg-Id is a duplicate naming the first's sequence."""
    first = await publisher.publish("events.user.u-1", b"[]", {H_MSG_ID: "same"})
    await publisher.publish("events.user.u-2", b"[]", {H_MSG_ID: "other"})
    again = await publisher.publish("events.user.u-1", b"[]", {H_MSG_ID: "same"})
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.seq == first.seq


async def test_a_refusal_carries_jetstreams_code(publisher: Publisher) -> None:
    """A publish expecting another last sequence is refused with JetStream's error code."""
    await publisher.publish("events.user.u-1", b"[]", {H_MSG_ID: "m-1"})
    with pytest.raises(Refused) as caught:
        await publisher.publish(
            "events.user.u-1", b"[]", {H_MSG_ID: "m-2", H_EXPECTED_LAST_SUBJECT_SEQ: "0"}
        )
    assert caught.value.err_code == WRONG_LAST_SEQUENCE
    assert caught.value.as_error("the append").err_code == WRONG_LAST_SEQUENCE


async def test_a_subject_no_stream_takes_is_no_stream(nc: NATS) -> None:
    """A publish to a subject outside every stream raises NoStream at once, not a timeout."""
    with pytest.raises(NoStream):
        await Publisher(nc, timeout=30.0).publish("nowhere.x", b"[]", {H_MSG_ID: "m"})


async def test_publishes_never_acknowledged_time_out_and_later_ones_still_work(
    nc: NATS,
) -> None:
    """Without an ack each publish times out; once something acknowledges, publishes succeed."""
    answer = anyio.Event()

    async def late_stream(msg: Msg) -> None:
        if answer.is_set():
            await msg.respond(b'{"stream":"FAKE","seq":7}')

    await nc.subscribe("silent.>", cb=late_stream)
    publisher = Publisher(nc, timeout=0.2)
    for i in range(3):
        with pytest.raises(Timeout):
            await publisher.publish(f"silent.{i}", b"", {H_MSG_ID: f"m-{i}"})
    assert publisher.waiting == 0
    answer.set()
    ack = await publisher.publish("silent.x", b"", {H_MSG_ID: "m-x"})
    assert (ack.seq, ack.duplicate) == (7, False)
    await publisher.stop()


async def test_stopping_after_the_connection_closed_is_quiet(publisher: Publisher) -> None:
    """A publisher stopped on a connection that is already closed stops without an error."""
    await publisher.publish("events.user.u-1", b"[]", {H_MSG_ID: "m-1"})
    await publisher.nc.close()
    await publisher.stop()
    assert publisher.waiting == 0

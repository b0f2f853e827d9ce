"""Batches from a pull consumer, one request each, against a real nats-server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import pytest
from nats.aio.client import Client as NATS
from nats.js import api

from runtime.errors import Unavailable
from runtime.transport.pull import Puller

from ..procs import wait_until

STREAM = "PULLS"
CONSUMER = "reader"


@pytest.fixture
async def puller(nc: NATS) -> AsyncIterator[Puller]:
    js = nc.jetstream()
    await js.add_stream(name=STREAM, subjects=["pulls.>"])
    await js.add_consumer(
        STREAM,
        api.ConsumerConfig(durable_name=CONSUMER, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=60),
    )
    reader = Puller(nc, STREAM, CONSUMER)
    await reader.start()
    try:
        yield reader
    finally:
        await reader.stop()


async def publish(nc: NATS, count: int, first: int = 1) -> None:
    js = nc.jetstream()
    for i in range(first, first + count):
        await js.publish(f"pulls.{i}", str(i).encode())


async def wait_for_waiting_request(nc: NATS) -> None:
    """Until the consumer holds a pull request (the fetch under test is waiting)."""
    js = nc.jetstream()

    async def waiting() -> bool:
        return bool((await js.consumer_info(STREAM, CONSUMER)).num_waiting)

    await wait_until(waiting, 5, "a pull request to wait on the consumer")


def seqs(msgs: list) -> list[int]:  # type: ignore[type-arg]
    return [m.metadata.sequence.stream for m in msgs]


async def test_batches_come_in_stream_order_and_end_with_what_is_there(
    nc: NATS, puller: Puller
) -> None:
    """Full batches, then a short one with the rest (the request ends, no waiting for more)."""
    await publish(nc, 25)
    assert seqs(await puller.fetch(10, timeout=5)) == list(range(1, 11))
    assert seqs(await puller.fetch(10, timeout=5)) == list(range(11, 21))
    rest = await puller.fetch(10, timeout=5)
    assert seqs(rest) == list(range(21, 26))
    assert [m.data for m in rest] == [str(i).encode() for i in range(21, 26)]


async def test_an_empty_consumer_gives_nothing_at_the_timeout(puller: Puller) -> None:
    """Nothing to deliver: an empty batch once the timeout has passed."""
    assert await puller.fetch(10, timeout=0.3) == []


async def test_a_waiting_fetch_returns_once_messages_come(nc: NATS, puller: Puller) -> None:
    """A fetch finding nothing waits, returns the first messages published meanwhile (not
    waiting for a full batch), and the next fetches the rest, in order."""
    async with anyio.create_task_group() as tg:
        got: list[int] = []

        async def fetch() -> None:
            got.extend(seqs(await puller.fetch(10, timeout=30)))

        tg.start_soon(fetch)
        await wait_for_waiting_request(nc)
        await publish(nc, 3)
    assert got and got == list(range(1, len(got) + 1))
    with anyio.fail_after(10):
        while len(got) < 3:
            got.extend(seqs(await puller.fetch(10, timeout=5)))
    assert got == [1, 2, 3]


async def test_a_fetch_leaves_no_request_behind_when_it_times_out(nc: NATS, puller: Puller) -> None:
    """The server ends an unanswered request at its expiry, about when the fetch gives up on
    it (the request's way to the server counts against the margin, so just after under load),
    and no request is left to take messages the fetch no longer waits for."""
    assert await puller.fetch(5, timeout=0.5) == []

    async def none_waiting() -> bool:
        return (await nc.jetstream().consumer_info(STREAM, CONSUMER)).num_waiting == 0

    await wait_until(none_waiting, 1, "the expired request to end")
    await publish(nc, 2)
    assert seqs(await puller.fetch(5, timeout=5)) == [1, 2]


async def test_a_consumer_deleted_mid_fetch_is_refused(nc: NATS, puller: Puller) -> None:
    """The server's "consumer deleted" ends a waiting fetch as Unavailable, and so does every
    later fetch (nothing answers for the consumer any more)."""
    async with anyio.create_task_group() as tg:
        errors: list[BaseException] = []

        async def fetch() -> None:
            try:
                await puller.fetch(5, timeout=10)
            except Unavailable as exc:
                errors.append(exc)

        tg.start_soon(fetch)
        await wait_for_waiting_request(nc)
        await nc.jetstream().delete_consumer(STREAM, CONSUMER)
    assert len(errors) == 1
    assert "409" in str(errors[0]) and "deleted" in str(errors[0]).lower()
    with pytest.raises(Unavailable):
        await puller.fetch(5, timeout=2)


async def test_messages_for_an_earlier_request_are_kept_for_the_next_fetch(
    nc: NATS, puller: Puller
) -> None:
    """A request still open on the server after its fetch gave up (here: one sent on the
    puller's inbox by hand) delivers into the puller: the next fetches return those messages
    first, then the rest, none lost and in stream order."""
    request = json.dumps({"batch": 4, "expires": 30_000_000_000}).encode()
    await nc.publish(
        f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{CONSUMER}", request, reply=puller._inbox + ".0"
    )
    await wait_for_waiting_request(nc)
    await publish(nc, 10)
    got: list[int] = []
    with anyio.fail_after(10):
        while len(got) < 10:
            got.extend(seqs(await puller.fetch(3, timeout=5)))
    assert got == list(range(1, 11))


async def test_fetched_messages_ack_nak_and_term(nc: NATS, puller: Puller) -> None:
    """The messages are nats-py's: metadata parses, and acks of each kind reach the server."""
    await publish(nc, 4)
    first, second, third, fourth = await puller.fetch(4, timeout=5)
    assert first.metadata.stream == STREAM
    assert first.metadata.consumer == CONSUMER
    assert first.metadata.num_delivered == 1
    assert first.metadata.num_pending == 3
    await first.ack_sync()
    await second.in_progress()
    await second.ack()
    await third.term()
    await fourth.nak()
    again = await puller.fetch(4, timeout=5)
    assert seqs(again) == [4]
    assert again[0].metadata.num_delivered == 2
    await again[0].ack_sync()
    info = await nc.jetstream().consumer_info(STREAM, CONSUMER)
    assert info.num_ack_pending == 0
    assert info.ack_floor.stream_seq == 4

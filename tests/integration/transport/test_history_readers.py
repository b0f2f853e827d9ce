"""Both history readers (batched direct get, scoped consumers) answer the same, on a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS

from runtime.transport.history_reader import HistoryReader, history_reader
from runtime.transport.streams import StreamSettings, ensure_event_stream
from runtime.wire.envelope import RawMessage

SUBJECT = "events.order.o-1"


@pytest.fixture(params=[False, True], ids=["direct_get", "scoped"])
async def reader(request: pytest.FixtureRequest, nc: NATS) -> AsyncIterator[HistoryReader]:
    await ensure_event_stream(nc.jetstream(), StreamSettings())
    chosen = history_reader(nc, "EVENTS", scoped=request.param, timeout=5)
    await chosen.start()
    try:
        yield chosen
    finally:
        await chosen.stop()


async def fill(nc: NATS, count: int) -> list[int]:
    """``count`` messages on SUBJECT, each followed by one on another order; their sequences."""
    js = nc.jetstream()
    seqs = [0]
    for i in range(count):
        # As commits are published: naming the predecessor for the concurrency check.
        headers = {"Cqrs-Command": f"c{i}", "Nats-Expected-Last-Subject-Sequence": str(seqs[-1])}
        ack = await js.publish(SUBJECT, b"%d" % i, headers=headers)
        seqs.append(ack.seq)
        await js.publish("events.order.o-2", b"other")
    return seqs[1:]


def shape(messages: list[RawMessage]) -> list[tuple[int, str, bytes, str | None]]:
    return [(m.seq, m.subject, m.data, m.headers.get("Cqrs-Command")) for m in messages]


async def test_a_history_is_every_message_of_the_subject_after_a_sequence(
    nc: NATS, reader: HistoryReader
) -> None:
    """A subject's history has its messages only, oldest first, from after ``after_seq``."""
    seqs = await fill(nc, 600)  # more than one direct get batch
    history = await reader.subject_history(SUBJECT)
    assert [m.seq for m in history] == seqs
    assert shape(history)[:2] == [(seqs[0], SUBJECT, b"0", "c0"), (seqs[1], SUBJECT, b"1", "c1")]
    assert [m.seq for m in await reader.subject_history(SUBJECT, after_seq=seqs[-3])] == seqs[-2:]
    assert [m.seq for m in await reader.subject_history(SUBJECT, after_seq=seqs[-2])] == seqs[-1:]
    assert await reader.subject_history(SUBJECT, after_seq=seqs[-2], up_to_seq=seqs[-2]) == []
    assert await reader.subject_history(SUBJECT, after_seq=seqs[-1]) == []
    assert await reader.subject_history("events.order.none") == []


async def test_a_history_stops_at_a_sequence_or_a_time(nc: NATS, reader: HistoryReader) -> None:
    """``up_to_seq`` and ``up_to_time`` keep the messages at or before them, timestamps exact."""
    seqs = await fill(nc, 5)
    history = await reader.subject_history(SUBJECT)
    assert [m.seq for m in await reader.subject_history(SUBJECT, up_to_seq=seqs[2])] == seqs[:3]
    cut = await reader.subject_history(SUBJECT, up_to_time=history[1].timestamp)
    assert [m.seq for m in cut] == seqs[:2]
    newest = await reader.last_for_subject(SUBJECT)
    assert newest is not None and newest.seq == seqs[-1]
    assert newest.timestamp == history[-1].timestamp


async def test_the_message_at_a_sequence_must_be_on_the_subject(
    nc: NATS, reader: HistoryReader
) -> None:
    """``at`` finds the subject's message at a sequence, and nothing at another subject's."""
    seqs = await fill(nc, 3)
    found = await reader.at(SUBJECT, seqs[1])
    assert found is not None and shape([found]) == [(seqs[1], SUBJECT, b"1", "c1")]
    assert await reader.at(SUBJECT, seqs[1] + 1) is None  # o-2's message
    newest = await reader.at(SUBJECT, seqs[-1])
    assert newest is not None and newest.data == b"2"
    assert await reader.at(SUBJECT, 10_000) is None

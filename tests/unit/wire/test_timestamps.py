"""Stored times: one written form, whichever way JetStream handed the time out."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg

from runtime import InvalidInput
from runtime.read.consumer import commit_of
from runtime.wire import codec
from runtime.wire.timestamps import format_timestamp, stored_timestamp, timestamp_ns

# 2026-12-06T18:57:28 UTC, in nanoseconds since the epoch
SECOND = 1_796_583_448 * 1_000_000_000

# nats-server's Nats-Time-Stamp (Go's RFC3339Nano drops the fraction's trailing zeros) and the
# one written form, for fractions with and without trailing zeros.
CASES = [
    (765_495_441, "2026-12-06T18:57:28.765495441Z", "2026-12-06T18:57:28.765495441Z"),
    (765_495_440, "2026-12-06T18:57:28.76549544Z", "2026-12-06T18:57:28.765495440Z"),
    (500_000_000, "2026-12-06T18:57:28.5Z", "2026-12-06T18:57:28.500000000Z"),
    (0, "2026-12-06T18:57:28Z", "2026-12-06T18:57:28.000000000Z"),
]


@pytest.mark.parametrize(("fraction", "header", "written"), CASES)
def test_a_stored_time_reads_the_same_from_a_header_and_from_nanoseconds(
    fraction: int, header: str, written: str
) -> None:
    """A time whose fraction ends in zeros is written with all nine digits, from either source."""
    assert format_timestamp(SECOND + fraction) == written
    assert stored_timestamp(header) == written
    assert timestamp_ns(written) == timestamp_ns(header) == SECOND + fraction


@pytest.mark.parametrize(("fraction", "header", "written"), CASES)
def test_a_delivered_commit_carries_the_same_time_as_a_direct_get(
    fraction: int, header: str, written: str
) -> None:
    """A consumer's delivery gives a commit the stored time to the nanosecond, in the same form."""
    reply = f"$JS.ACK.EVENTS.c.1.42.7.{SECOND + fraction}.0"
    body = codec.dumps([{"type": "order.created.v1", "data": {}}])
    msg = Msg(None, subject="events.order.o-1", reply=reply, data=body, headers={})  # type: ignore[arg-type]
    commit = commit_of(msg)
    assert (commit.seq, commit.timestamp) == (42, written)


def test_stream_timestamps_keep_their_nanoseconds_and_offsets_count() -> None:
    """Times compare exactly to the nanosecond, whatever offset they are written in."""
    assert timestamp_ns("1970-01-01T00:00:01.000000001Z") == 1_000_000_001
    assert timestamp_ns("2026-11-26T12:00:00.5+02:00") == timestamp_ns("2026-11-26T10:00:00.5Z")


@pytest.mark.parametrize("text", ["yesterday", "2026-11-26", "2026-11-26T10:00:00"])
def test_a_time_without_date_clock_and_offset_is_invalid(text: str) -> None:
    """Anything but a full RFC 3339 time with an offset is refused."""
    with pytest.raises(InvalidInput):
        timestamp_ns(text)

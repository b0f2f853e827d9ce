"""The one written form of a stream message's stored time: RFC 3339 in UTC, to the nanosecond.

JetStream stores a time in nanoseconds with each message and hands it out in two shapes: the
``Nats-Time-Stamp`` header of a direct get, which nats-server writes with Go's RFC3339Nano and so
drops the fraction's trailing zeros (``...28.76549544Z`` for 765495440 ns, ``...28Z`` for none),
and the nanosecond count in a consumer delivery's ack subject. The readers of histories and
projections turn both into :func:`format_timestamp`'s form (always nine fraction digits, ``Z``),
so that the same commit reads the same whichever way it was read, and the strings sort as the
times do.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from ..errors import InvalidInput, excerpt

RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# len("2026-12-06T18:57:28.765495440Z"): the form format_timestamp writes (years 1000 to 9999)
FORMATTED_LENGTH = 30


def timestamp_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time, exactly (stored times have ns).

    Raises :class:`InvalidInput` for anything else, including a time without an offset.
    """
    match = RFC3339.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(
            f"{excerpt(text)} is not an RFC 3339 time such as 2026-11-26T10:00:00Z",
            details={"field": "time"},
        )
    offset = "+00:00" if match["offset"] in ("Z", "z") else match["offset"]
    try:
        moment = datetime.fromisoformat(f"{match['date']}T{match['time']}{offset}")
    except ValueError as exc:
        raise InvalidInput(
            f"{excerpt(text)} is not a valid time: {exc}", details={"field": "time"}
        ) from None
    seconds = (moment - EPOCH) // timedelta(seconds=1)
    return seconds * 1_000_000_000 + int((match["frac"] or "0")[:9].ljust(9, "0"))


def format_timestamp(ns: int) -> str:
    """The stored time ``ns`` (nanoseconds since the epoch) as RFC 3339 in UTC with all nine
    fraction digits, e.g. ``2026-12-06T18:57:28.765495440Z``."""
    seconds, frac = divmod(ns, 1_000_000_000)
    moment = EPOCH + timedelta(seconds=seconds)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{frac:09d}Z"


def stored_timestamp(header: str) -> str:
    """A ``Nats-Time-Stamp`` header in :func:`format_timestamp`'s form ("" stays "")."""
    if not header or (len(header) == FORMATTED_LENGTH and header[19] == "." and header[-1] == "Z"):
        return header  # nine digits already (nine in ten commits): no parsing on the read path
    return format_timestamp(timestamp_ns(header))

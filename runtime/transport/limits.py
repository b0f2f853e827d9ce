"""Message sizes against the server's ``max_payload``, counted the way the server counts them.

nats-py compares only the body with ``max_payload``, but the server counts headers too, and a
message over the limit makes the server close the connection: a process would stay alive and
serve nothing. So every publish of something whose size depends on client input (replies,
commits, snapshots, dead letters) is measured here first, headers included.
"""

from __future__ import annotations

from collections.abc import Mapping

from nats.aio.client import Client as NATS

from ..errors import InvalidInput

_HEADER_LINE = len(b"NATS/1.0\r\n")
_FINAL_CRLF = 2


def header_size(headers: Mapping[str, str] | None) -> int:
    """The bytes ``headers`` take on the wire (``NATS/1.0`` line, ``key: value`` lines), or a
    few more: nats-py strips surrounding blanks, which this counts, so it never undercounts.

    Every commit and reply is measured, so ASCII text (nearly all of it) is counted without
    encoding it: one join, and ``isascii`` on the joined text, which CPython answers from a flag.
    """
    if not headers:
        return 0
    text = "".join(headers) + "".join(headers.values())
    size = len(text) if text.isascii() else len(text.encode())
    return size + _HEADER_LINE + _FINAL_CRLF + 4 * len(headers)  # ": " and CRLF on each line


def message_size(payload: bytes, headers: Mapping[str, str] | None = None) -> int:
    return len(payload) + header_size(headers)


def too_large(what: str, size: int, limit: int) -> InvalidInput:
    """The ``invalid`` error for something over the limit; it names sizes, never the content."""
    return InvalidInput(
        f"{what} would be {size} bytes; the server accepts at most {limit}",
        details={"field": "$", "reason": "too_large", "size": size, "max_payload": limit},
    )


def check_fits(
    nc: NATS, what: str, payload: bytes, headers: Mapping[str, str] | None = None
) -> None:
    """Raise :class:`InvalidInput` (``too_large``) unless the message fits ``max_payload``."""
    size = message_size(payload, headers)
    limit = nc.max_payload
    if size > limit:
        raise too_large(what, size, limit)

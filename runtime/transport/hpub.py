"""Publishing a message whose header block is already encoded (see runtime/wire/headers.py).

nats-py's ``publish`` takes headers only as a dict and encodes it on every call. The command
path encodes its commit headers itself, much more cheaply, and hands the finished ``HPUB``
frame to the client's outgoing buffer the way ``Client.publish`` does after its encoding: the
same checks before, the same statistics, the same flush. That buffer is nats-py's internal
(``_send_command`` and ``_flush_pending``, stable across nats-py 2.x); a client without them gets
the plain ``publish`` with the headers decoded again, so nothing breaks, it only costs more.
tests/unit/transport/test_hpub.py checks that the frame is byte for byte nats-py's own.
"""

from __future__ import annotations

from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

from ..wire.headers import HEADER_LINE
from .refusals import Connection

_CRLF = b"\r\n"
DIRECT = all(hasattr(NATS, name) for name in ("_send_command", "_flush_pending"))


def hpub_frame(subject: str, reply: str, header_block: bytes, payload: bytes) -> bytes:
    """The ``HPUB`` protocol frame nats-py would write for this message."""
    size = len(header_block)
    line = f"HPUB {subject} {reply} {size} {size + len(payload)}\r\n".encode()
    return b"".join((line, header_block, payload, _CRLF))


def decoded(header_block: bytes) -> dict[str, str]:
    """The header dict of an encoded block (the fallback path; values are already clean)."""
    lines = header_block.decode().removeprefix(HEADER_LINE).split("\r\n")
    return dict(line.split(": ", 1) for line in lines if line)


async def publish_encoded(
    nc: NATS, subject: str, payload: bytes, *, reply: str, header_block: bytes
) -> None:
    """``nc.publish(subject, payload, reply, headers)`` with the headers encoded already.

    ``subject`` and ``reply`` must be valid subjects (the caller builds them from checked
    tokens), and the caller has checked the size against ``max_payload``, headers included.
    Raises nats-py's errors as ``publish`` does.
    """
    if not DIRECT:
        await nc.publish(subject, payload, reply=reply, headers=decoded(header_block))
        return
    if isinstance(nc, Connection):  # as its publish does: a refused publish fails its waiter
        nc.remember(subject, reply)
    client: Any = nc  # nats-py's internals are untyped
    if nc.is_closed:
        raise nats.errors.ConnectionClosedError
    if nc.is_draining_pubs:
        raise nats.errors.ConnectionDrainingError
    size = len(payload)
    if not nc.is_connected:
        limit = client._max_pending_size
        if limit <= 0 or size + client._pending_data_size > limit:
            raise nats.errors.OutboundBufferLimitError
    if size > nc.max_payload:
        raise nats.errors.MaxPayloadError
    stats = nc.stats
    stats["out_msgs"] += 1
    stats["out_bytes"] += size
    await client._send_command(hpub_frame(subject, reply, header_block, payload))
    flush_queue = client._flush_queue
    if flush_queue is not None and flush_queue.empty():
        await client._flush_pending()

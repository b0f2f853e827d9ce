"""What makes a command id an idempotency key: its scope, its fingerprint and its short hash.

JetStream deduplicates by ``Nats-Msg-Id`` across the whole stream, but command ids are scoped to
the aggregate, so the message id is a hash of (aggregate, id, command id): the same command id on
two aggregates is two commands. The commit also carries a fingerprint of the command's name and
arguments, so a command id reused for another command is recognised and refused as ``conflict``
(as Stripe treats a reused idempotency key) instead of answered with the first command's reply.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

from . import codec

H_FINGERPRINT = "Cqrs-Command-Fingerprint"


def msg_id(aggregate: str, aggregate_id: str, command_id: str) -> str:
    """The ``Nats-Msg-Id`` of a command's commit: scoped to its aggregate."""
    key = f"{aggregate}.{aggregate_id}.{command_id}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


def fingerprint(command: str, args: Any) -> str:
    """A short digest of the command's name and its validated arguments in canonical JSON
    (sorted keys; orjson serialises the dataclasses itself, the codec the rest)."""
    digest = hashlib.blake2b(command.encode() + b"\0" + codec.canonical(args), digest_size=8)
    return digest.hexdigest()


def id_hash(command_id: str) -> int:
    """A 32-bit hash (CRC-32) of a command id, for the compact memory of past commands.

    A match is only a hint: the commit it points to is read and its command id compared, so a
    collision costs one read and never a wrong reply; what matters here is that it is cheap and
    the same in every process, which Python's own ``hash`` is not.
    """
    return zlib.crc32(command_id.encode())

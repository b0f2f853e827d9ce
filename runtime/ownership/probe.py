"""Does the server partition commands, and into how many partitions?

A worker publishes one message to ``cmd.cqrs_probe.<random>.ping`` and listens on both the mapped
form (``cmd.*.cqrs_probe.<random>.ping``) and the plain subject: whichever receives it says whether
the mapping is there, and the partition it lands in must be the one this worker computes, or the
server's partition count differs from the worker's.
"""

from __future__ import annotations

import uuid

import anyio
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ..errors import ConfigurationError
from ..transport.nats_errors import nats_call
from ..wire.naming import COMMAND_PREFIX
from ..wire.partitions import partition_of

PROBE_AGGREGATE = "cqrs_probe"


PROBES = 4  # one probe could land in the expected partition by chance with another count


async def server_partitions(nc: NATS, partitions: int, *, timeout: float = 2.0) -> bool:
    """True when the server maps commands into ``partitions`` partitions, False when it does
    not map them at all; :class:`ConfigurationError` when it maps them differently."""
    run = uuid.uuid4().hex[:12]
    tokens = {f"{run}-{i}" for i in range(PROBES)}
    got: dict[str, str] = {}
    arrived = anyio.Event()

    async def seen(msg: Msg) -> None:
        token = msg.subject.split(".")[-2]
        if token in tokens:
            got[token] = msg.subject
            if len(got) == len(tokens):
                arrived.set()

    base = f"{PROBE_AGGREGATE}.*.ping"
    with nats_call("probing the command partition mapping"):
        mapped = await nc.subscribe(f"{COMMAND_PREFIX}.*.{base}", cb=seen)
        plain = await nc.subscribe(f"{COMMAND_PREFIX}.{base}", cb=seen)
        try:
            await nc.flush()
            for token in tokens:
                await nc.publish(f"{COMMAND_PREFIX}.{PROBE_AGGREGATE}.{token}.ping", b"")
            with anyio.move_on_after(timeout):
                await arrived.wait()
        finally:
            await mapped.unsubscribe()
            await plain.unsubscribe()
    if not got or any(subject.count(".") == 3 for subject in got.values()):
        return False
    for token, subject in got.items():
        found = int(subject.split(".")[1])
        expected = partition_of(partitions, PROBE_AGGREGATE, token)
        if found != expected:
            raise ConfigurationError(
                f"the server partitions commands differently from this worker's {partitions} "
                f"partitions (a probe landed in {found}, expected {expected}); give the worker "
                "the server's count (--partitions) or regenerate the server config"
            )
    return True

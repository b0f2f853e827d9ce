"""What a stopped process leaves behind on a server: leases and replica claims it held, and the
lines it logged while stopping."""

from __future__ import annotations

from collections.abc import Iterable

import nats.js.errors
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from runtime.ownership.coordinator import OwnershipSettings
from runtime.read.presence import BUCKET as REPLICA_BUCKET

LEASES = OwnershipSettings().bucket_for("EVENTS")


def complaints(lines: Iterable[str]) -> list[str]:
    """The lines that are not debug- or info-level JSON log lines: warnings, errors,
    tracebacks."""
    out = []
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            out.append(line)
            continue
        if not isinstance(entry, dict) or entry.get("level") not in ("debug", "info"):
            out.append(line)
    return out


def every_partition(aggregates: Iterable[str] = ("user", "order")) -> set[str]:
    partitions = OwnershipSettings().partitions
    return {f"lease.{a}.{p}" for a in aggregates for p in range(partitions)}


async def lease_keys(nc: NATS) -> tuple[set[str], set[str]]:
    """The lease bucket's keys still holding a value, and those released (a delete marker).

    A released lease keeps its delete marker, while one left to expire leaves no message at
    all: so "every lease released" can be told from "every lease expired" at any later time.
    """
    js = nc.jetstream()
    kv = await js.key_value(LEASES)
    info = await js.stream_info(f"KV_{LEASES}", subjects_filter=f"$KV.{LEASES}.>")
    held, released = set(), set()
    for subject in info.state.subjects or {}:
        key = subject.removeprefix(f"$KV.{LEASES}.")
        try:
            await kv.get(key)
            held.add(key)
        except nats.js.errors.KeyNotFoundError as exc:
            # nats-py reports a delete marker as "not found" carrying the marker; a key left to
            # expire has none.
            if getattr(exc, "op", None) == "DEL":
                released.add(key)
    return held, released


async def claims(nc: NATS) -> set[str]:
    """The subjects of the replica claims live right now."""
    info = await nc.jetstream().stream_info(f"KV_{REPLICA_BUCKET}", subjects_filter=">")
    return set(info.state.subjects or {})


class Markers:
    """The delete markers written to the lease and replica buckets while it watches (replica
    claims live in a memory bucket whose markers expire with the claims' TTL, so they are
    watched as they are written rather than looked up later)."""

    def __init__(self) -> None:
        self.deleted: set[str] = set()

    async def watch(self, nc: NATS) -> None:
        async def on_marker(msg: Msg) -> None:
            if (msg.headers or {}).get("KV-Operation") == "DEL":
                self.deleted.add(msg.subject)

        await nc.subscribe(f"$KV.{LEASES}.>", cb=on_marker)
        await nc.subscribe(f"$KV.{REPLICA_BUCKET}.>", cb=on_marker)
        await nc.flush()

"""Leases and member heartbeats in one JetStream KV bucket.

A lease is the key ``lease.<aggregate>.<partition>`` holding the owner's member id. It is written
with a per-message TTL (``Nats-TTL``), so the server forgets it by itself when its owner stops
renewing; renewing and taking over are compare-and-set writes on the key's revision, so two
members can never both succeed. A member announces itself with ``member.<id>`` (its heartbeat,
with the same TTL). nats-py's ``KeyValue.update`` takes no TTL, so the writes here are plain
JetStream publishes with the KV headers; reads go through the KV API.

While a worker starts, the calls of its first ownership round wait for JetStream like its other
set-up calls (:mod:`runtime.transport.startup`): a lease bucket created a moment ago may not have
elected its leader yet. A write retried after a timeout may find its first attempt stored; a
lease write then fails its compare-and-set, and the next round finds the lease holding this
member's id and takes it over as its own.

Whether a lease is still held is judged by the holder's *monotonic* clock: a lease renewed at
``t`` is trusted until ``t + ttl * TRUST``, counted from before the renewal was sent, so the
server's expiry always comes later. A process paused past that (SIGSTOP, a long GC) finds its
lease untrusted the moment it wakes, before it answers anything.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass, field
from typing import Any

import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import api
from nats.js.kv import KeyValue

from ..errors import ConfigurationError
from ..transport.nats_errors import WRONG_LAST_SEQUENCE_CODES, jetstream_setup, nats_call
from ..transport.startup import jetstream_call
from ..transport.streams import bind_key_value
from ..wire import codec
from ..wire.envelope import H_EXPECTED_LAST_SUBJECT_SEQ

TRUST = 0.8  # share of the TTL a holder trusts its lease for after sending a renewal


def lease_key(aggregate: str, partition: int) -> str:
    return f"lease.{aggregate}.{partition}"


def member_key(member: str) -> str:
    return f"member.{member}"


@dataclass(eq=False, slots=True)
class Lease:
    """One held lease: its KV revision and until when (monotonic) its holder may trust it.

    ``trusted_from`` delays trust after a takeover from an owner that vanished without releasing:
    a write that owner sent just before it stopped may still land, so for one TTL the new owner
    confirms every decision against the stream.
    """

    aggregate: str
    partition: int
    revision: int
    valid_until: float
    trusted_from: float = 0.0
    lost: bool = field(default=False)

    def held(self) -> bool:
        """Whether the lease is still this holder's (by its monotonic clock)."""
        return not self.lost and time.monotonic() < self.valid_until

    def valid(self) -> bool:
        """Whether the holder may answer from its own state right now (held, past the grace)."""
        now = time.monotonic()
        return not self.lost and self.trusted_from <= now < self.valid_until


@dataclass(frozen=True, slots=True)
class LeaseView:
    """A lease as ``cqrs workers`` shows it."""

    aggregate: str
    partition: int
    owner: str


class LeaseBucket:
    """Creates, renews, releases and lists leases and member heartbeats."""

    def __init__(
        self, nc: NATS, bucket: str, *, ttl: int, replicas: int = 1, timeout: float = 5.0
    ) -> None:
        if ttl < 1:
            raise ConfigurationError(f"the lease TTL must be at least 1 second, got {ttl}")
        self.js = nc.jetstream(timeout=timeout)
        self.bucket = bucket
        self.ttl = ttl
        self.replicas = replicas
        self._kv: KeyValue | None = None

    @property
    def kv(self) -> KeyValue:
        if self._kv is None:
            raise RuntimeError("LeaseBucket.start() was not called")
        return self._kv

    async def bind(self) -> bool:
        """Bind an existing bucket (for readers); False when there is none."""
        what = f"the lease bucket {self.bucket!r}"
        with jetstream_setup(what):
            try:
                self._kv = await jetstream_call(what, lambda: self.js.key_value(self.bucket))
            except nats.js.errors.BucketNotFoundError:
                return False
        return True

    async def start(self) -> None:
        config = api.KeyValueConfig(
            bucket=self.bucket,
            description="partition leases and worker heartbeats",
            history=1,
            replicas=self.replicas,
            storage=api.StorageType.FILE,
            direct=True,
        )
        self._kv = await bind_key_value(self.js, config, f"the lease bucket {self.bucket!r}")

    async def _write(self, key: str, value: bytes, *, last: int | None) -> int | None:
        """Publish ``value`` with the TTL; None when ``last`` no longer matches."""
        headers = {} if last is None else {H_EXPECTED_LAST_SUBJECT_SEQ: str(last)}
        try:
            ack = await jetstream_call(
                f"the lease bucket {self.bucket!r}",
                lambda: self.js.publish(
                    f"$KV.{self.bucket}.{key}", value, headers=headers, msg_ttl=self.ttl
                ),
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code in WRONG_LAST_SEQUENCE_CODES:
                return None
            raise
        return int(ack.seq)

    async def acquire(self, aggregate: str, partition: int, member: str) -> Lease | None:
        """Take the lease when nobody holds it; None when someone does (or wins the race)."""
        key = lease_key(aggregate, partition)
        with nats_call("acquiring a lease"):
            last = 0
            released = False
            try:
                entry = await jetstream_call(f"the lease {key!r}", lambda: self.kv.get(key))
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError) as exc:
                # No message left (never held, or expired), or a delete marker (released by its
                # last owner, which nats-py reports as "not found" with the marker's entry).
                entry = None
                marker = getattr(exc, "entry", None)
                if marker is not None and marker.revision:
                    last, released = marker.revision, True
            if entry is not None:
                if entry.value != member.encode():
                    return None
                last = entry.revision or 0  # ours from an earlier life: take it over
            started = time.monotonic()
            revision = await self._write(key, member.encode(), last=last)
        if revision is None:
            return None
        return Lease(
            aggregate,
            partition,
            revision,
            valid_until=started + self.ttl * TRUST,
            trusted_from=0.0 if released else started + self.ttl,
        )

    async def renew(self, lease: Lease, member: str) -> bool:
        """Extend ``lease``; False (and the lease marked lost) when someone else took it."""
        started = time.monotonic()
        with nats_call("renewing a lease"):
            revision = await self._write(
                lease_key(lease.aggregate, lease.partition), member.encode(), last=lease.revision
            )
        if revision is None:
            lease.lost = True
            return False
        lease.revision = revision
        lease.valid_until = started + self.ttl * TRUST
        return True

    async def release(self, lease: Lease) -> None:
        """Give the lease up (a delete marker, so the next owner knows it was handed over)."""
        lease.lost = True
        with nats_call("releasing a lease"), contextlib.suppress(nats.js.errors.APIError):
            await self.kv.delete(lease_key(lease.aggregate, lease.partition), last=lease.revision)

    async def heartbeat(self, member: str, info: dict[str, Any]) -> None:
        with nats_call("announcing this worker"):
            await self._write(member_key(member), codec.dumps(info), last=None)

    async def leave(self, member: str) -> None:
        with nats_call("withdrawing this worker"):
            await self.kv.delete(member_key(member))

    async def members(self) -> dict[str, dict[str, Any]]:
        """The live members (those whose heartbeat has not expired) and what they announced."""
        out: dict[str, dict[str, Any]] = {}
        for key, value in await self._entries("member."):
            with contextlib.suppress(ValueError):
                info = codec.loads(value)
                out[key.removeprefix("member.")] = info if isinstance(info, dict) else {}
        return out

    async def leases(self) -> list[LeaseView]:
        views = []
        for key, value in await self._entries("lease."):
            _, aggregate, partition = key.split(".", 2)
            views.append(LeaseView(aggregate, int(partition), value.decode()))
        return sorted(views, key=lambda v: (v.aggregate, v.partition))

    async def _entries(self, prefix: str) -> list[tuple[str, bytes]]:
        """The keys under ``prefix`` that hold a value, with it.

        The keys come from the bucket stream's subject list, one answer from the server.
        nats-py's ``kv.keys()`` watches the bucket instead and, when a key is written while it
        watches, can end early or find nothing (about one call in ten with workers renewing
        their leases): a member list missing live members makes a worker hand off partitions it
        should keep, and ``cqrs workers`` showed every partition unowned.
        """
        subjects = f"$KV.{self.bucket}."
        what = f"the lease bucket {self.bucket!r}"
        with nats_call("listing the lease bucket"):
            kv = self.kv
            info = await jetstream_call(
                what, lambda: self.js.stream_info(f"KV_{self.bucket}", f"{subjects}{prefix}>")
            )
            out = []
            for subject in sorted(info.state.subjects or {}):
                key = subject.removeprefix(subjects)
                with contextlib.suppress(
                    nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError
                ):
                    entry = await jetstream_call(what, functools.partial(kv.get, key))
                    out.append((key, entry.value or b""))
            return out

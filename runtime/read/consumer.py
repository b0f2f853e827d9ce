"""The durable pull consumer of one projection replica, and where it is positioned.

Each replica has a consumer of its own (``cqrs-proj-<projection>-<replica>``, and
``cqrs-proj-<projection>-v<N>-<replica>`` for version N >= 2, so a new version's replicas consume
beside the old ones on the same host), filtered to the event subjects of the aggregates its
projection follows, so every replica sees every event. Version 1 keeps the unversioned name that
deployments made before versions ran side by side already have.

The consumer's acknowledgements are not the replica's recovery point (its snapshot is), so
:meth:`ReplicaConsumer.start` always puts the consumer right after the sequence the replica's
model reflects: a consumer whose position is elsewhere (ahead after a ``kill -9``, behind when
another replica's newer snapshot was restored) is reset there (ADR-60, nats-server 2.14+), or
recreated when a reset is refused; one whose filter or ack settings differ is recreated.

Acks use ``AckPolicy.ALL`` with an unlimited ``max_ack_pending``: one ack per snapshot covers
every batch before it, and the server never stops delivering while a snapshot is pending.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api

from ..domain.projection import Projection
from ..errors import Internal
from ..log import get_logger
from ..transport.nats_errors import jetstream_setup, nats_call
from ..transport.pull import Puller
from ..transport.startup import jetstream_call
from ..transport.streams import StreamSettings, ensure_event_stream
from ..wire.envelope import Commit, RawMessage
from ..wire.timestamps import format_timestamp
from .settings import ProjectorSettings

log = get_logger("runtime.read.consumer")


CONSUMER_PREFIX = "cqrs-proj-"


META_PROJECTION = "cqrs_projection"
META_VERSION = "cqrs_version"


def consumer_name(projection: str, replica: str, version: int = 1) -> str:
    if version == 1:
        return f"{CONSUMER_PREFIX}{projection}-{replica}"
    return f"{CONSUMER_PREFIX}{projection}-v{version}-{replica}"


def consumer_version(projection: str, info: api.ConsumerInfo) -> int | None:
    """The projection version a replica consumer serves (from its metadata, or for consumers
    made before it carried any, from its name), or None when it is not one of ``projection``'s."""
    config = info.config
    metadata = (config.metadata if config is not None else None) or {}
    if META_VERSION in metadata:
        if metadata.get(META_PROJECTION) != projection:
            return None
        return int(metadata[META_VERSION])
    name = info.name or ""
    prefix = f"{CONSUMER_PREFIX}{projection}-"
    if not name.startswith(prefix):
        return None
    versioned = re.match(r"v([0-9]+)-", name[len(prefix) :])
    return int(versioned.group(1)) if versioned else 1


def delivery_of(msg: Msg) -> tuple[int, int, int]:
    """The stream sequence, consumer sequence and delivery count of a message delivered by a
    consumer, read straight from its reply subject (nats-py's ``msg.metadata`` makes several
    objects and a datetime, once per event)."""
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return int(tokens[5]), int(tokens[6]), int(tokens[4])
    if len(tokens) >= 11:  # the same after <domain>.<account hash>, maybe with a trailing token
        return int(tokens[7]), int(tokens[8]), int(tokens[6])
    metadata = msg.metadata
    return metadata.sequence.stream, metadata.sequence.consumer, metadata.num_delivered


def commit_of(msg: Msg) -> Commit:
    """The :class:`Commit` a message delivered by a JetStream consumer holds, with its stored
    time to the nanosecond (nats-py's ``msg.metadata`` rounds it to microseconds)."""
    tokens = (msg.reply or "").split(".")
    if len(tokens) != 9 and len(tokens) < 11:
        raise Internal(f"not a JetStream delivery: reply subject {msg.reply!r}")
    seq, stored_ns = (tokens[5], tokens[7]) if len(tokens) == 9 else (tokens[7], tokens[9])
    raw = RawMessage(
        seq=int(seq),
        subject=msg.subject,
        timestamp=format_timestamp(int(stored_ns)),
        headers=msg.headers or {},
        data=msg.data,
    )
    return Commit.from_message(raw)


class ReplicaConsumer:
    """Creates, positions, fetches from and acknowledges one replica's durable consumer."""

    def __init__(self, nc: NATS, projection: Projection[Any], settings: ProjectorSettings) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=settings.timeout)
        self.projection = projection
        self.settings = settings
        self.stream = settings.stream
        self.name = consumer_name(projection.name, settings.replica, projection.version)
        self.subjects = projection.subjects()
        self.log = log.bind(projection=projection.name, consumer=self.name)
        self._what = f"consumer {self.name}"
        # The consumer numbers its first deliveries 1, 2, 3...; one that skips a number means
        # deliveries were lost on the way (a dropped connection, a consumer failover), which
        # later ones must not overtake. A redelivery keeps its first delivery's number.
        self.next_consumer_seq = 1
        self._sub: Puller | None = None

    def _config(self, after_seq: int) -> api.ConsumerConfig:
        single = len(self.subjects) == 1
        return api.ConsumerConfig(
            name=self.name,
            durable_name=self.name,
            description=(
                f"cqrs projection {self.projection.name} v{self.projection.version}, "
                f"replica {self.settings.replica}"
            ),
            metadata={
                META_PROJECTION: self.projection.name,
                META_VERSION: str(self.projection.version),
            },
            deliver_policy=(
                api.DeliverPolicy.BY_START_SEQUENCE if after_seq else api.DeliverPolicy.ALL
            ),
            opt_start_seq=after_seq + 1 if after_seq else None,
            ack_policy=api.AckPolicy.ALL,
            ack_wait=self.settings.ack_wait,
            max_deliver=-1,
            max_ack_pending=-1,
            filter_subject=self.subjects[0] if single else None,
            filter_subjects=None if single else list(self.subjects),
            replay_policy=api.ReplayPolicy.INSTANT,
            inactive_threshold=self.settings.consumer_inactive,
        )

    def _mismatch(self, config: api.ConsumerConfig) -> str | None:
        subjects = set(config.filter_subjects or []) | (
            {config.filter_subject} if config.filter_subject else set()
        )
        if subjects != set(self.subjects):
            return f"filter {sorted(subjects)} is not {sorted(self.subjects)}"
        if config.ack_policy != api.AckPolicy.ALL or config.max_ack_pending != -1:
            return "ack settings differ"
        if abs((config.ack_wait or 0) - self.settings.ack_wait) > 0.5:
            return "ack_wait differs"
        return None

    async def start(self, *, after_seq: int) -> None:
        """Make sure the consumer exists and delivers next the first message after
        ``after_seq``; (re)bind the pull subscription."""
        await ensure_event_stream(
            self.js, StreamSettings(name=self.stream, replicas=self.settings.replicas)
        )
        self.next_consumer_seq = 1  # a new, reset or recreated consumer starts over
        with jetstream_setup(self._what):
            try:
                info = await jetstream_call(
                    self._what, lambda: self.js.consumer_info(self.stream, self.name)
                )
            except nats.js.errors.NotFoundError:
                await jetstream_call(
                    self._what, lambda: self.js.add_consumer(self.stream, self._config(after_seq))
                )
                self.log.info("consumer_created", start_seq=after_seq + 1)
            else:
                reason = self._mismatch(info.config)
                delivered = info.delivered.stream_seq if info.delivered else 0
                if reason is not None:
                    await self._recreate(after_seq, reason)
                elif delivered != after_seq:
                    await self._reposition(after_seq, delivered)
                elif info.delivered is not None:
                    self.next_consumer_seq = info.delivered.consumer_seq + 1
        await self._rebind()

    async def _recreate(self, after_seq: int, reason: str) -> None:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await jetstream_call(
                self._what, lambda: self.js.delete_consumer(self.stream, self.name)
            )
        await jetstream_call(
            self._what, lambda: self.js.add_consumer(self.stream, self._config(after_seq))
        )
        self.log.info("consumer_recreated", start_seq=after_seq + 1, reason=reason)

    async def _reposition(self, after_seq: int, delivered: int) -> None:
        try:
            await jetstream_call(
                self._what,
                lambda: self.js.reset_consumer(self.stream, self.name, seq=after_seq + 1),
            )
        except nats.js.errors.APIError as exc:  # below its start sequence, or an older server
            await self._recreate(after_seq, f"reset refused: {exc.description}")
            return
        self.log.info("consumer_reset", delivered_seq=delivered, start_seq=after_seq + 1)

    async def _rebind(self) -> None:
        """A fresh inbox, so nothing delivered before a reposition can still arrive."""
        await self._unsubscribe()
        puller = Puller(self.nc, self.stream, self.name)
        await puller.start()
        self._sub = puller

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.stop()

    async def stop(self) -> None:
        await self._unsubscribe()

    async def delete(self) -> None:
        """Stop, and delete the consumer from the server (for a replica that is gone for good)."""
        await self._unsubscribe()
        with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
            await self.js.delete_consumer(self.stream, self.name)

    async def fetch(self, batch: int) -> list[Msg]:
        """Up to ``batch`` messages, waiting up to ``fetch_timeout`` when there are none."""
        if self._sub is None:
            raise Internal("the consumer is not started")
        # Empty when nothing came in time (also while the stream's leader fails over);
        # Unavailable when the consumer was deleted or the connection closed.
        return await self._sub.fetch(batch, self.settings.fetch_timeout)

    async def ack_through(self, msg: Msg) -> None:
        """Acknowledge ``msg`` and, with ``AckPolicy.ALL``, everything delivered before it."""
        try:
            await msg.ack()
        except Exception as exc:  # already acked, or the connection is gone: a later ack covers it
            self.log.debug("ack_failed", error=repr(exc))

    async def info(self) -> api.ConsumerInfo:
        with nats_call(f"the info of consumer {self.name}"):
            info: api.ConsumerInfo = await self.js.consumer_info(self.stream, self.name)
        return info

    async def pending(self) -> tuple[int, int]:
        """The consumer's undelivered message count and the last stream sequence it delivered."""
        info = await self.info()
        return int(info.num_pending or 0), int(info.delivered.stream_seq if info.delivered else 0)

    async def stream_last_seq(self) -> int:
        with nats_call(f"the info of stream {self.stream}"):
            info = await self.js.stream_info(self.stream)
        return int(info.state.last_seq)

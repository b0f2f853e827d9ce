"""Snapshots of aggregate state in a JetStream KV bucket, so old and busy aggregates load fast.

Reading an aggregate's history costs in proportion to the span of the stream it covers, not the
number of its events, so an aggregate with thousands of events in a big stream loads slowly from
the start. A snapshot holds the state after some commit, the aggregate's version and the stream
sequence of that commit; loading reads it and folds only the commits after that sequence.

A snapshot is an optimisation, never the truth: the stream is. So a snapshot is written after a
commit, in the background of the actor host, and never delays or fails the command's reply; a
failed write is logged and tried again after a later command. A snapshot that cannot be used (it
does not decode, its state schema version is not the aggregate's ``state_version``, it belongs to
another stream or it does not line up with the stream) is logged and ignored, and the aggregate is
rebuilt from its full history and snapshotted again.

The recent command ids travel in the snapshot too: they are what recognises a retried command,
and without them a retry arriving after a restart would find only the ids of the commits after
the snapshot.

One key per aggregate instance (``<aggregate>.<id>``, both single subject tokens, so valid KV
keys). Writes are compare-and-set on the revision the writer last saw, so of two workers that
snapshot the same aggregate the older snapshot never replaces the newer one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import nats.errors
import nats.js.errors
from anyio.abc import TaskGroup
from nats.aio.client import Client as NATS
from nats.js import api
from nats.js.kv import KeyValue

from ..domain.aggregate import Aggregate
from ..errors import (
    Conflict,
    CqrsError,
    Internal,
    InvalidInput,
    SchemaError,
)
from ..log import get_logger
from ..transport.limits import check_fits
from ..transport.nats_errors import translate
from ..transport.streams import bind_key_value
from ..wire import codec
from ..wire.envelope import H_EXPECTED_LAST_SUBJECT_SEQ
from ..wire.idempotency import id_hash
from .command_memory import CommandMemory


class Snapshotted(Protocol):
    """What the snapshot writer reads and updates on an actor (see :mod:`runtime.write.actor`)."""

    aggregate: Aggregate[Any]
    aggregate_id: str
    state: Any
    version: int
    last_seq: int
    loaded: bool
    recent: CommandMemory | None
    snapshot_rev: int
    snapshot_version: int


log = get_logger("runtime.write.snapshots")

FORMAT = 1  # the layout of the snapshot record itself (not of the state inside it)
MAX_CAS_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class SnapshotSettings:
    """Where aggregate snapshots live; ``bucket`` defaults to ``<stream>_aggregates``."""

    enabled: bool = True
    bucket: str | None = None
    replicas: int | None = None  # default: the event stream's replicas

    def bucket_for(self, stream: str) -> str:
        return self.bucket or f"{stream}_aggregates"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An aggregate's state after the commit at stream sequence ``seq``."""

    state: Any
    version: int
    seq: int
    recent: Sequence[tuple[int, int]]  # command id hash -> commit sequence, oldest first


@dataclass(frozen=True, slots=True)
class SnapshotRead:
    """What a load found: a usable snapshot or None, and the key's KV revision (0: no key)."""

    snapshot: Snapshot | None
    revision: int


def snapshot_key(aggregate: str, aggregate_id: str) -> str:
    return f"{aggregate}.{aggregate_id}"


def encode_snapshot(
    aggregate: Aggregate[Any],
    stream: str,
    aggregate_id: str,
    snapshot: Snapshot,
) -> bytes:
    """The KV value of a snapshot (JSON through the runtime's codec)."""
    return codec.dumps(
        {
            "format": FORMAT,
            "stream": stream,
            "aggregate": aggregate.name,
            "id": aggregate_id,
            "state_version": aggregate.state_version,
            "version": snapshot.version,
            "seq": snapshot.seq,
            "recent": [[hashed, seq] for hashed, seq in snapshot.recent],
            "taken_at": datetime.now(UTC).isoformat(),
            "state": codec.to_builtins(snapshot.state),
        }
    )


def decode_snapshot(
    aggregate: Aggregate[Any], stream: str, aggregate_id: str, value: bytes
) -> Snapshot:
    """Rebuild a snapshot; raise :class:`SchemaError` saying why it cannot be used."""
    try:
        record = codec.loads(value)
    except CqrsError:
        raise SchemaError("the snapshot is not valid JSON") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise SchemaError("the snapshot has an unknown format")
    if record.get("state_version") != aggregate.state_version:
        raise SchemaError(
            f"the snapshot has state schema version {record.get('state_version')!r}, "
            f"the aggregate {aggregate.state_version}",
            details={"reason": "state_version"},
        )
    if (record.get("stream"), record.get("aggregate"), record.get("id")) != (
        stream,
        aggregate.name,
        aggregate_id,
    ):
        raise SchemaError("the snapshot belongs to another stream or aggregate")
    try:
        version, seq = int(record["version"]), int(record["seq"])
        recent = [(_id_hash(hashed), int(at)) for hashed, at in record["recent"]]
        state = codec.convert(record["state"], aggregate.state_type)
    except CqrsError as exc:
        raise SchemaError(f"the snapshot's state does not decode: {exc.message}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise SchemaError(f"the snapshot is malformed: {type(exc).__name__}: {exc}") from None
    if version < 0 or seq < 0:
        raise SchemaError("the snapshot has a negative version or sequence")
    return Snapshot(state=state, version=version, seq=seq, recent=recent)


def _id_hash(value: object) -> int:
    """A remembered command as a hash (snapshots written before hashing hold the id itself)."""
    if isinstance(value, str):
        return id_hash(value)
    if isinstance(value, int) and 0 <= value <= 0xFFFFFFFF:
        return value
    raise ValueError(f"not a command id hash: {value!r}")


def remembered(actor: Snapshotted) -> list[tuple[int, int]]:
    """The actor's memory of its last commands, as a snapshot holds it."""
    return list(actor.recent.entries(actor.last_seq)) if actor.recent is not None else []


def _peek_position(value: bytes) -> tuple[int, int]:
    """The (seq, version) a stored snapshot claims, or (-1, 0) when it cannot be read."""
    try:
        record = codec.loads(value)
        return int(record["seq"]), int(record["version"])
    except (CqrsError, KeyError, TypeError, ValueError):
        return -1, 0


class SnapshotStore:
    """Reads and writes aggregate snapshots in one KV bucket."""

    def __init__(
        self,
        nc: NATS,
        stream: str,
        settings: SnapshotSettings | None = None,
        *,
        stream_replicas: int = 1,
        timeout: float = 5.0,
    ) -> None:
        self.settings = settings or SnapshotSettings()
        self.stream = stream
        self.bucket = self.settings.bucket_for(stream)
        self.replicas = self.settings.replicas or stream_replicas
        self.nc = nc
        self.js = nc.jetstream(timeout=timeout)
        self._kv: KeyValue | None = None

    async def start(self) -> None:
        """Bind the bucket, creating it when it does not exist yet."""
        config = api.KeyValueConfig(
            bucket=self.bucket,
            description=f"aggregate snapshots of stream {self.stream}",
            history=1,
            replicas=self.replicas,
            storage=api.StorageType.FILE,
            direct=True,
        )
        self._kv = await bind_key_value(self.js, config, f"the snapshot bucket {self.bucket!r}")

    @property
    def kv(self) -> KeyValue:
        if self._kv is None:
            raise Internal("the snapshot store is not started")
        return self._kv

    async def load(self, aggregate: Aggregate[Any], aggregate_id: str) -> SnapshotRead:
        """The newest usable snapshot of one aggregate, if any.

        Never raises for an unusable or unreachable snapshot: it logs why and returns no
        snapshot, and the caller rebuilds from the stream, which is always correct.
        """
        context = {"aggregate": aggregate.name, "id": aggregate_id, "bucket": self.bucket}
        try:
            entry = await self.kv.get(snapshot_key(aggregate.name, aggregate_id))
        except nats.js.errors.KeyNotFoundError as exc:
            deleted = getattr(exc, "entry", None)
            return SnapshotRead(None, deleted.revision if deleted is not None else 0)
        except nats.errors.Error as exc:
            log.warning("snapshot_unreadable", **context, reason=f"{type(exc).__name__}: {exc}")
            return SnapshotRead(None, 0)
        revision = int(entry.revision or 0)
        try:
            snapshot = decode_snapshot(aggregate, self.stream, aggregate_id, entry.value or b"")
        except SchemaError as exc:
            log.warning("snapshot_ignored", **context, reason=exc.message, revision=revision)
            return SnapshotRead(None, revision)
        return SnapshotRead(snapshot, revision)

    async def save(
        self,
        aggregate: Aggregate[Any],
        aggregate_id: str,
        value: bytes,
        *,
        seq: int,
        version: int,
        last_revision: int,
    ) -> tuple[int, int]:
        """Write an encoded snapshot unless the bucket already holds a newer one.

        Returns the revision and aggregate version of the snapshot the key holds afterwards.
        Raises :class:`InvalidInput` (too large), :class:`Conflict`, or what the write met on
        the way (:class:`Timeout`, :class:`Unavailable`, :class:`JetStreamError`).
        """
        key = snapshot_key(aggregate.name, aggregate_id)
        # Over max_payload the server would close the connection: refuse before sending.
        check_fits(self.nc, "the snapshot", value, {H_EXPECTED_LAST_SUBJECT_SEQ: str(2**64)})
        for _attempt in range(MAX_CAS_ATTEMPTS):
            try:
                return await self.kv.update(key, value, last=last_revision), version
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
            except nats.errors.MaxPayloadError:
                raise InvalidInput(
                    f"the snapshot is {len(value)} bytes, over the server's max payload",
                    details={"size": len(value)},
                ) from None
            except nats.errors.Error as exc:
                raise translate(exc, f"the snapshot write of {key}") from None
            # Someone else wrote the key since we read it: keep theirs if it is as new as ours.
            try:
                current = await self.kv.get(key)
            except nats.js.errors.KeyNotFoundError as exc:
                deleted = getattr(exc, "entry", None)
                last_revision = deleted.revision if deleted is not None else 0
                continue
            except nats.errors.Error as exc:
                raise translate(exc, f"the snapshot read of {key}") from None
            their_seq, their_version = _peek_position(current.value or b"")
            if their_seq >= seq:
                return int(current.revision or 0), their_version
            last_revision = int(current.revision or 0)
        raise Conflict(f"{key}: other writers kept replacing the snapshot")


class SnapshotWriter:
    """The snapshot policy and the background writes, in the actor host's task group.

    An aggregate is due once it has ``snapshot_every`` events more than its newest snapshot;
    since a failed write leaves that unchanged, the next command retries it. At most one write
    per aggregate runs at a time; when commands moved the aggregate on by another
    ``snapshot_every`` events while it ran, the next write starts as soon as it succeeds.

    An aggregate that leaves memory (passivated, evicted, or the worker shutting down) is also
    snapshotted when its snapshot lacks some of its events and it is old enough to have
    snapshots at all, so its next load reads no commits after the snapshot.
    """

    def __init__(self, store: SnapshotStore) -> None:
        self.store = store
        self._writing: set[tuple[str, str]] = set()
        self._leaving: set[tuple[str, str]] = set()  # left memory while a write was in flight
        self._settled = anyio.Event()
        self._settled.set()

    def due(self, actor: Snapshotted) -> bool:
        every = actor.aggregate.snapshot_every
        return (
            every is not None
            and actor.loaded
            and actor.version - actor.snapshot_version >= every
            and (actor.aggregate.name, actor.aggregate_id) not in self._writing
        )

    def after_command(self, actor: Snapshotted, tg: TaskGroup) -> None:
        """Start a snapshot write of ``actor`` if it is due; returns at once."""
        if self.due(actor):
            self._start(actor, tg)

    def before_passivation(self, actor: Snapshotted, tg: TaskGroup) -> None:
        """Start a snapshot write of an aggregate leaving memory if its snapshot is behind."""
        every = actor.aggregate.snapshot_every
        if every is None or not actor.loaded or actor.version < every:
            return
        if actor.version <= actor.snapshot_version:
            return
        key = (actor.aggregate.name, actor.aggregate_id)
        if key in self._writing:
            self._leaving.add(key)  # written once the write in flight is done
        else:
            self._start(actor, tg)

    def _start(self, actor: Snapshotted, tg: TaskGroup) -> None:
        aggregate, aggregate_id = actor.aggregate, actor.aggregate_id
        snapshot = Snapshot(actor.state, actor.version, actor.last_seq, remembered(actor))
        try:
            value = encode_snapshot(aggregate, self.store.stream, aggregate_id, snapshot)
        except Exception:
            log.exception("snapshot_unencodable", aggregate=aggregate.name, id=aggregate_id)
            actor.snapshot_version = actor.version  # try again after another snapshot_every
            return
        key = (aggregate.name, aggregate_id)
        self._writing.add(key)
        if self._settled.is_set():
            self._settled = anyio.Event()
        tg.start_soon(self._write, actor, key, snapshot, value, tg)

    async def _write(
        self,
        actor: Snapshotted,
        key: tuple[str, str],
        snapshot: Snapshot,
        value: bytes,
        tg: TaskGroup,
    ) -> None:
        bound = log.bind(aggregate=key[0], id=key[1], version=snapshot.version, seq=snapshot.seq)
        last_revision = actor.snapshot_rev
        written = False
        try:
            revision, version = await self.store.save(
                actor.aggregate,
                actor.aggregate_id,
                value,
                seq=snapshot.seq,
                version=snapshot.version,
                last_revision=last_revision,
            )
        except InvalidInput as exc:
            bound.warning("snapshot_too_large", reason=exc.message, size=len(value))
            actor.snapshot_version = max(actor.snapshot_version, snapshot.version)
        except CqrsError as exc:
            bound.warning("snapshot_failed", code=exc.code, reason=exc.message)
        except Exception:
            bound.exception("snapshot_crashed")
        else:
            if revision > actor.snapshot_rev:
                actor.snapshot_rev = revision
                actor.snapshot_version = version
            bound.debug("snapshot_written", revision=revision, size=len(value))
            written = True
        finally:
            self._writing.discard(key)
            leaving = key in self._leaving
            self._leaving.discard(key)
            if written and leaving:
                self.before_passivation(actor, tg)
            elif written:
                self.after_command(actor, tg)
            if not self._writing:
                self._settled.set()

    async def settled(self) -> None:
        """Wait until no snapshot write is in flight."""
        while self._writing:
            await self._settled.wait()

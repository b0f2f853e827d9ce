"""Read-model snapshots in the JetStream Object Store.

A projection replica keeps its read model in memory, so the model is only as durable as its last
snapshot: state, the stream sequence it reflects and its schema version. Snapshots go to the
Object Store, not KV, because a read model soon outgrows KV's 1 MiB value limit.

An object per replica and version (``<projection>.<replica>``, ``<projection>.v<N>.<replica>``
for version N >= 2) means replicas never overwrite each other's snapshot while another is reading
it, also when two versions run side by side on one host; a starting replica restores the newest
readable snapshot of its projection's version, whichever replica wrote it.

The blob's layout is :mod:`runtime.read.snapshot_blob`'s: written in format 2, frames that are
decoded while the rest downloads; format 1, the layout before it, is still read.

A snapshot that cannot be read, or has another schema version, is never an error for the caller:
it is logged and skipped, and the replica rebuilds by full replay.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import api
from nats.js.object_store import ObjectStore

from ..domain.projection import Projection
from ..errors import Internal, NotFound
from ..log import get_logger
from ..transport.nats_errors import jetstream_setup, nats_call, translate
from ..transport.startup import jetstream_call
from ..transport.streams import create_once
from .snapshot_blob import (
    Assembler,
    CorruptSnapshot,
    Sink,
    decode_model,
    encode_frames,
    gc_paused,
    pack,
)

log = get_logger("runtime.read.snapshots")

M = TypeVar("M")

DEFAULT_BUCKET = "cqrs-projections"
H_PROJECTION = "Cqrs-Projection"
H_REPLICA = "Cqrs-Replica"
H_SEQ = "Cqrs-Seq"
H_SCHEMA = "Cqrs-Schema"
H_EVENTS = "Cqrs-Events"
H_TAKEN_AT = "Cqrs-Taken-At"


@dataclass(frozen=True, slots=True)
class ProjectionSnapshot:
    """What is known about one stored snapshot without downloading it."""

    projection: str
    replica: str
    seq: int
    schema: int
    events: int  # events the model had absorbed since it was empty
    taken_at: str
    size: int = 0
    stored_as: str = ""  # the object's name, when read from the store (older ones differ)

    @property
    def object_name(self) -> str:
        return self.stored_as or object_name(self.projection, self.replica, self.schema)

    def age(self, now: datetime | None = None) -> float:
        """Seconds since the snapshot was taken."""
        taken = datetime.fromisoformat(self.taken_at)
        return ((now or datetime.now(UTC)) - taken).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "projection": self.projection,
            "replica": self.replica,
            "seq": self.seq,
            "schema": self.schema,
            "events": self.events,
            "taken_at": self.taken_at,
            "size": self.size,
        }


def object_name(projection: str, replica: str, version: int = 1) -> str:
    if version == 1:
        return f"{projection}.{replica}"
    return f"{projection}.v{version}.{replica}"


# -- the blob ---------------------------------------------------------------------------------


def encode_snapshot(projection: Projection[M], model: M, info: ProjectionSnapshot) -> bytes:
    """The blob of a snapshot (blocking and CPU-bound: run it in a worker thread)."""
    return pack_snapshot(encode_model(projection, model), info)


def encode_model(projection: Projection[M], model: M) -> list[bytes]:
    """The first step of :func:`encode_snapshot`, the only one that reads the model (so the
    model must not change meanwhile): its msgpack frames."""
    return encode_frames(projection.model_type, model)


def pack_snapshot(encoded: list[bytes], info: ProjectionSnapshot) -> bytes:
    """The second step of :func:`encode_snapshot`: the blob of an encoded model. Most of the
    time goes to the compression, which releases the GIL, so events can be applied meanwhile."""
    return pack(encoded, info.to_dict())


def _info_from(obj: api.ObjectInfo) -> ProjectionSnapshot | None:
    headers = obj.headers or {}

    def one(key: str) -> str:
        value = headers.get(key)
        if isinstance(value, list):  # Go clients store headers as lists of values
            return str(value[0]) if value else ""
        return "" if value is None else str(value)

    try:
        return ProjectionSnapshot(
            projection=one(H_PROJECTION),
            replica=one(H_REPLICA),
            seq=int(one(H_SEQ)),
            schema=int(one(H_SCHEMA)),
            events=int(one(H_EVENTS) or 0),
            taken_at=one(H_TAKEN_AT),
            size=int(obj.size or 0),
            stored_as=obj.name or "",
        )
    except ValueError:
        return None


# -- the store --------------------------------------------------------------------------------


class ProjectionSnapshotStore:
    """Saves, lists, loads and deletes read-model snapshots in one Object Store bucket."""

    def __init__(
        self,
        nc: NATS,
        bucket: str = DEFAULT_BUCKET,
        *,
        replicas: int = 1,
        timeout: float = 10.0,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=timeout)
        self.bucket = bucket
        self.replicas = replicas
        self._obs: ObjectStore | None = None

    async def start(self, *, create: bool = True) -> None:
        """Bind to the bucket, creating it when it does not exist yet (and ``create``)."""
        what = f"the snapshot bucket {self.bucket!r}"
        with jetstream_setup(what):
            try:
                self._obs = await jetstream_call(what, lambda: self.js.object_store(self.bucket))
                return
            except nats.js.errors.NotFoundError:
                if not create:
                    raise NotFound(f"{what} does not exist") from None
            config = api.ObjectStoreConfig(
                description="cqrs-runtime projection snapshots",
                storage=api.StorageType.FILE,
                replicas=self.replicas,
            )
            self._obs = await create_once(
                lambda: self.js.create_object_store(self.bucket, config),
                lambda: self.js.object_store(self.bucket),
                what,
            )

    @property
    def obs(self) -> ObjectStore:
        if self._obs is None:
            raise Internal("the snapshot store is not started")
        return self._obs

    async def save(
        self, projection: Projection[M], info: ProjectionSnapshot, blob: bytes
    ) -> ProjectionSnapshot:
        """Store ``blob`` (from :func:`encode_snapshot`) as ``info``'s replica's snapshot."""
        headers = {
            H_PROJECTION: [info.projection],
            H_REPLICA: [info.replica],
            H_SEQ: [str(info.seq)],
            H_SCHEMA: [str(info.schema)],
            H_EVENTS: [str(info.events)],
            H_TAKEN_AT: [info.taken_at],
        }
        meta = api.ObjectMeta(
            name=info.object_name,
            description=f"snapshot of projection {projection.name} at seq {info.seq}",
            headers=headers,
        )
        with nats_call(f"the upload of snapshot {info.object_name}"):
            stored = await self.obs.put(info.object_name, blob, meta=meta)
        return ProjectionSnapshot(**{**info.to_dict(), "size": int(stored.size or len(blob))})

    async def list(self, projection: str | None = None) -> list[ProjectionSnapshot]:
        """Every snapshot (of ``projection``), newest sequence first."""
        what = f"the snapshots in {self.bucket!r}"
        with nats_call(f"listing {what}"):
            try:
                objects = await jetstream_call(what, lambda: self.obs.list(ignore_deletes=True))
            except nats.js.errors.NotFoundError:
                return []
        infos = [i for o in objects if not o.deleted and (i := _info_from(o)) is not None]
        if projection is not None:
            infos = [i for i in infos if i.projection == projection]
        return sorted(infos, key=lambda i: (-i.seq, i.replica))

    async def delete(self, info: ProjectionSnapshot) -> None:
        with (
            nats_call(f"deleting snapshot {info.object_name}"),
            contextlib.suppress(nats.js.errors.NotFoundError),
        ):
            await self.obs.delete(info.object_name)

    async def load(self, projection: Projection[M], info: ProjectionSnapshot) -> M:
        """Download and decode one snapshot; raise :class:`CorruptSnapshot` when it is bad."""

        async def download() -> tuple[Sink, Assembler]:
            # Each attempt from the first chunk, with a decoder of its own.
            assembler = Assembler(projection.model_type)
            sink = Sink(assembler)
            with gc_paused():  # (a format-2 model is decoded meanwhile)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(anyio.to_thread.run_sync, assembler.run)
                    try:
                        await self.obs.get(info.object_name, writeinto=sink)  # type: ignore[arg-type]
                    finally:
                        assembler.close()
            return sink, assembler

        try:  # at start, waits for JetStream like the bucket and the listing before it
            sink, assembler = await jetstream_call(f"snapshot {info.object_name}", download)
        except nats.js.errors.DigestMismatchError:
            raise CorruptSnapshot("the snapshot's digest does not match its bytes") from None
        except (nats.js.errors.ObjectNotFoundError, nats.js.errors.BadObjectMetaError) as exc:
            raise CorruptSnapshot(f"the snapshot is gone or unreadable: {exc!r}") from None
        except nats.errors.Error as exc:
            raise translate(exc, f"the download of snapshot {info.object_name}") from None
        header, body = sink.finish()
        if header.get("projection") != projection.name:
            raise CorruptSnapshot(f"the snapshot header does not fit: {header}")
        if header.get("seq") != info.seq or header.get("schema") != info.schema:
            raise CorruptSnapshot("the snapshot header disagrees with its object's metadata")
        if body is None:
            model: M = assembler.result(header.get("frames"))
            return model
        with gc_paused():
            return await anyio.to_thread.run_sync(decode_model, projection.model_type, body)

    async def restore(
        self, projection: Projection[M], *, replica: str
    ) -> tuple[M, ProjectionSnapshot] | None:
        """The newest readable snapshot of the projection's current schema, or None.

        Snapshots of another schema version, and ones that cannot be read, are logged and
        skipped: the caller then replays from the first event.
        """
        bound = log.bind(projection=projection.name, replica=replica)
        candidates = await self.list(projection.name)
        # Newest first; at the same sequence this replica's own snapshot first.
        candidates.sort(key=lambda i: (-i.seq, i.replica != replica))
        for info in candidates:
            if info.schema != projection.version:
                bound.warning(
                    "snapshot_other_version",
                    snapshot_replica=info.replica,
                    snapshot_schema=info.schema,
                    schema=projection.version,
                    seq=info.seq,
                )
                continue
            started = anyio.current_time()
            try:
                model = await self.load(projection, info)
            except CorruptSnapshot as exc:
                bound.error(
                    "snapshot_unreadable",
                    snapshot_replica=info.replica,
                    seq=info.seq,
                    reason=str(exc),
                )
                continue
            bound.info(
                "snapshot_restored",
                snapshot_replica=info.replica,
                seq=info.seq,
                size=info.size,
                seconds=round(anyio.current_time() - started, 3),
            )
            return model, info
        return None

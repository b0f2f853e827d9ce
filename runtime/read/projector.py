"""A projection replica: its durable consumer, the apply loop, snapshots and poison events.

Each replica reads the event stream through a durable pull consumer of its own, filtered to the
aggregates its projection follows, and applies whole batches in stream order to an in-memory
read model. What makes that safe:

- **Exactly-once effect.** The replica remembers the stream sequence it has applied and skips
  anything at or below it, so redeliveries and repositioned consumers change nothing.
- **The snapshot is the recovery point, not the consumer.** An in-memory model is only as
  durable as its last snapshot, so acknowledgements follow snapshots: after a snapshot at
  sequence S is stored, one ``AckPolicy.ALL`` ack of S covers the batches before it; nothing
  past S is ever acknowledged. On start the replica restores the newest snapshot and puts its
  consumer at S + 1 (reset, or recreated, when its position is elsewhere, e.g. after a
  ``kill -9``), so it comes back to exactly the state a full replay would give.
- **Poison events** (a handler that keeps failing, an event that does not decode) are retried
  with exponential back-off; then the projection's policy applies: ``halt`` stops applying but
  keeps serving queries and reports the failure, ``skip`` records the event in the dead-letter
  stream (:mod:`runtime.read.dead_letters`) and goes on.

Snapshots are taken every ``snapshot_every`` commits, every ``snapshot_interval`` seconds when
something changed, and on a graceful stop. The model is encoded while applying is paused, then
uploaded while applying goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

import anyio
import msgspec
from anyio.abc import TaskGroup
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ..backoff import Backoff
from ..domain.projection import EventMeta, Projection
from ..errors import CqrsError, Internal
from ..log import get_logger
from ..observability.tracing import linked_span, tracer
from ..transport.cleanup import cleanup_scope
from ..transport.startup import waiting_for_jetstream
from ..wire import codec
from ..wire.envelope import (
    H_COMMAND_ID,
    H_CORRELATION_ID,
    H_RECORDED_AT,
    H_VERSION,
    encoded_events,
)
from .consumer import ReplicaConsumer, delivery_of
from .dead_letters import DeadLetters
from .poison import EventFailed, PoisonHandler, PoisonReport, now
from .position import ReadPosition
from .settings import ProjectorSettings
from .snapshots import (
    ProjectionSnapshot,
    ProjectionSnapshotStore,
    encode_model,
    pack_snapshot,
)

log = get_logger("runtime.read.projector")

# Between fetches that failed (a server restarting, a consumer deleted): soon, then less often.
FETCH_BACKOFF = Backoff(first=0.2, maximum=5.0, jitter=0.2)

M = TypeVar("M")


class Projector(Generic[M]):
    """One replica of one projection: its read model and the loop that keeps it current."""

    def __init__(
        self, nc: NATS, projection: Projection[M], settings: ProjectorSettings | None = None
    ) -> None:
        self.nc = nc
        self.projection = projection
        self.settings = settings or ProjectorSettings()
        self.replica = self.settings.replica
        self.log = log.bind(projection=projection.name, replica=self.replica)
        self.consumer = ReplicaConsumer(nc, projection, self.settings)
        self.snapshots = ProjectionSnapshotStore(
            nc,
            self.settings.snapshot_bucket,
            replicas=self.settings.replicas,
            timeout=self.settings.timeout,
        )
        self.poison = PoisonHandler(
            projection.name,
            self.replica,
            projection.on_poison,
            self.settings.max_attempts,
            self.settings.retry_backoff,
            DeadLetters(
                nc,
                self.settings.dead_letter_stream,
                replicas=self.settings.replicas,
                timeout=self.settings.timeout,
            ),
            self.log,
        )
        self.read_position = ReadPosition(self.consumer.stream_last_seq, self.consumer.pending)
        self.model: M = projection.new_model()
        self.events = 0  # events applied since the model was empty
        self.duplicates = 0
        self.halted: PoisonReport | None = None
        self.partial = False  # halted in the middle of a commit: no snapshot may be taken
        self.last_snapshot: ProjectionSnapshot | None = None
        self.restored_from: ProjectionSnapshot | None = None
        self.started_at = now()
        self._last_msg: Msg | None = None
        self._since_snapshot = 0
        self._snapshot_clock = time.monotonic()
        self._snapshot_cost = 0.0  # seconds the last snapshot took (encode and upload)
        self._uploading = False
        self._upload_done = anyio.Event()
        self._upload_done.set()
        self._tg: TaskGroup | None = None
        self._consume_scope: anyio.CancelScope | None = None
        self._consumer_lost = False  # its position is unknown until a recovery succeeds
        # Whether it has caught up and serves, as its election says (run_replica's).
        self.standing: Callable[[], dict[str, Any]] | None = None

    # -- life cycle ----------------------------------------------------------------------------

    @property
    def applied(self) -> int:
        """The stream sequence of the last commit applied."""
        return self.read_position.applied

    @property
    def position(self) -> int:
        """The stream sequence the read model reflects (query replies carry it)."""
        return self.read_position.value

    async def start(self, *, restore: bool = True) -> None:
        """Restore the newest snapshot (unless told not to) and put the consumer right after it."""
        await self.snapshots.start()
        restored = None
        if restore:
            restored = await self.snapshots.restore(self.projection, replica=self.replica)
        if restored is None:
            self.log.info("projection_full_replay")
        else:
            self.model, info = restored
            self.read_position.applied, self.events = info.seq, info.events
            self.restored_from = info
            if info.replica == self.replica:
                self.last_snapshot = info
        await self.consumer.start(after_seq=self.applied)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Projector[M]]:
        """Start, consume until the context exits, then stop consuming and take a snapshot."""
        with waiting_for_jetstream(self.settings.startup_timeout):
            await self.start()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                # Made here, not in the task: cancelling it works even before the task runs.
                self._consume_scope = anyio.CancelScope()
                tg.start_soon(self._consume)
                try:
                    yield self
                finally:
                    self.read_position.release()
                    self._consume_scope.cancel()
                    with cleanup_scope(self.settings.timeout):
                        await self._final_snapshot()
                    self._tg = None
        finally:
            with cleanup_scope(self.settings.timeout):
                await self.consumer.stop()

    async def _final_snapshot(self) -> None:
        await self._upload_done.wait()
        if self._snapshot_possible():
            try:
                info, blob, msg = await self._encode()
                await self._upload(info, blob, msg)
            except CqrsError as exc:
                self.log.error("final_snapshot_failed", code=exc.code, reason=exc.message)

    # -- the loop ------------------------------------------------------------------------------

    async def _consume(self) -> None:
        assert self._consume_scope is not None
        with self._consume_scope:
            failures = 0
            while True:
                if self.halted is not None:
                    await anyio.sleep_forever()  # keep serving queries; a restart retries
                if self._consumer_lost:
                    # Tried again until JetStream answers: after deliveries went missing, waiting
                    # for the next one to notice could take until the next command, or ack_wait.
                    failures += 1
                    await anyio.sleep(FETCH_BACKOFF.delay(failures))
                    await self._recover_consumer()
                    continue
                try:
                    msgs = await self.consumer.fetch(self.settings.batch)
                    failures = 0
                except CqrsError as exc:
                    self.log.warning("fetch_failed", code=exc.code, reason=exc.message)
                    self._consumer_lost = True
                    continue
                if msgs:
                    await self.apply_batch(msgs)
                if self._snapshot_due():
                    await self._snapshot_in_background()

    async def _recover_consumer(self) -> None:
        """After a failed fetch (e.g. the consumer was deleted) or lost deliveries, put the
        consumer right after what is applied; if that fails too, the consume loop tries again."""
        self._last_msg = None  # never ack a delivery of the consumer's previous position
        self._consumer_lost = True
        try:
            await self.consumer.start(after_seq=self.applied)
        except CqrsError as exc:
            self.log.warning("consumer_recovery_failed", code=exc.code, reason=exc.message)
            return
        self._consumer_lost = False

    async def apply_batch(self, msgs: list[Msg]) -> None:
        """Apply a fetched batch in order; stop at a poison event under the ``halt`` policy, and
        at a gap in the consumer's deliveries (the consumer is then put back)."""
        position = self.read_position
        before = position.applied
        consumer = self.consumer
        gap = False
        t = tracer()
        for msg in msgs:
            seq, consumer_seq, deliveries = delivery_of(msg)
            first = deliveries == 1
            if seq <= position.applied:
                self.duplicates += 1
                if first:  # a reset or failed-over consumer numbers its deliveries anew
                    consumer.next_consumer_seq = consumer_seq + 1
                continue
            if first and consumer_seq != consumer.next_consumer_seq:
                self.log.warning(
                    "delivery_gap",
                    seq=seq,
                    consumer_seq=consumer_seq,
                    expected=consumer.next_consumer_seq,
                    applied_seq=position.applied,
                )
                gap = True
                break
            if first:
                consumer.next_consumer_seq = consumer_seq + 1
            try:
                if t is None:
                    self._apply_message(msg, seq, 0)
                else:  # a span of its own, linked to the command's that made the commit
                    with linked_span(t, f"apply {self.projection.name}", msg.headers, seq):
                        self._apply_message(msg, seq, 0)
            except EventFailed as failure:
                report = await self.poison.handle(msg, seq, failure, self._apply_message)
                if report is not None:
                    self._halt(report)
                    break
            position.applied = seq
            self._last_msg = msg
            self._since_snapshot += 1
        if position.applied != before:
            position.signal()
        if gap:
            # Deliveries went missing (lost with a connection, or a consumer failover): skipping
            # by sequence would lose them for good, so start again right after what is applied.
            await self._recover_consumer()

    def _apply_message(self, msg: Msg, seq: int, start: int) -> None:
        """Apply the events of one commit from index ``start``; raise :class:`EventFailed`."""
        encoded = encoded_events(msg.data)
        events: list[Any]
        if encoded is not None:
            events = encoded  # each event's data decoded straight into its class
        else:
            try:
                events = codec.loads(msg.data)
                if not isinstance(events, list):
                    raise TypeError("a commit body must be a JSON list")
            except (CqrsError, TypeError) as exc:
                # The whole commit is unreadable: index -1 stands for all of its events.
                raise EventFailed(-1, "", msg.data.decode("utf-8", "replace"), exc) from None
        headers = msg.headers or {}
        _, aggregate, aggregate_id = msg.subject.split(".", 2)
        first_version = int(headers.get(H_VERSION, "0")) - len(events) + 1
        recorded_at = headers.get(H_RECORDED_AT, "")
        command_id = headers.get(H_COMMAND_ID, "")
        correlation_id = headers.get(H_CORRELATION_ID, "")
        apply = self.projection.apply_encoded if encoded is not None else self.projection.apply
        model = self.model
        for index in range(start, len(events)):
            event: Any = events[index]
            type_name = ""
            data: Any = event
            try:
                if encoded is not None:
                    type_name, data = event.type, event.data
                else:
                    type_name, data = event["type"], event.get("data")
                meta = EventMeta(
                    aggregate,
                    aggregate_id,
                    seq,
                    first_version + index,
                    type_name,
                    recorded_at,
                    command_id,
                    correlation_id,
                )
                if apply(model, type_name, data, meta):
                    self.events += 1
            except Exception as exc:
                if isinstance(data, msgspec.Raw):  # reported as the general way reports it
                    data = msgspec.json.decode(data)
                raise EventFailed(index, type_name, data, exc) from exc

    def _halt(self, report: PoisonReport) -> None:
        self.halted = report
        self.partial = report.index > 0  # events before it in its commit are applied
        self.read_position.blocked = True
        self.read_position.signal()  # waiting queries answer `stale` now
        self.log.error("projection_halted", policy=self.projection.on_poison, **report.to_dict())

    # -- snapshots -----------------------------------------------------------------------------

    def _snapshot_possible(self) -> bool:
        done = self.last_snapshot.seq if self.last_snapshot is not None else 0
        if self.restored_from is not None:
            done = max(done, self.restored_from.seq)
        return self.applied > done and not self.partial

    def _snapshot_due(self) -> bool:
        if self._uploading or not self._snapshot_possible():
            return False
        every, interval = self.settings.snapshot_every, self.settings.snapshot_interval
        since = time.monotonic() - self._snapshot_clock
        if every is not None and self._since_snapshot >= every:
            # At most about a tenth of the time goes to snapshots: a model that takes long to
            # snapshot (a big one, while catching up) is snapshotted less often than `every`.
            return since >= 9 * self._snapshot_cost
        return interval is not None and since >= interval

    async def _encode(self) -> tuple[ProjectionSnapshot, list[bytes], Msg | None]:
        info = ProjectionSnapshot(
            projection=self.projection.name,
            replica=self.replica,
            seq=self.applied,
            schema=self.projection.version,
            events=self.events,
            taken_at=now(),
        )
        msg = self._last_msg
        started = time.monotonic()
        try:
            # Applying waits here (the model must not change while it is read); queries go on.
            # The compression comes later, in the upload, while events are applied again.
            encoded = await anyio.to_thread.run_sync(encode_model, self.projection, self.model)
        except Exception as exc:  # a model msgspec cannot encode: a bug in the projection
            raise Internal(f"the read model cannot be encoded: {exc!r}") from exc
        finally:
            self._since_snapshot = 0
            self._snapshot_clock = time.monotonic()
            self._snapshot_cost = self._snapshot_clock - started
        return info, encoded, msg

    async def _snapshot_in_background(self) -> None:
        try:
            info, encoded, msg = await self._encode()
        except CqrsError as exc:
            self.log.error("snapshot_failed", seq=self.applied, code=exc.code, reason=exc.message)
            return  # keep applying; the next snapshot is tried at the next trigger
        assert self._tg is not None
        self._uploading = True
        self._upload_done = anyio.Event()
        self._tg.start_soon(self._upload_guarded, info, encoded, msg)

    async def _upload_guarded(
        self, info: ProjectionSnapshot, encoded: list[bytes], msg: Msg | None
    ) -> None:
        try:
            await self._upload(info, encoded, msg)
        except CqrsError as exc:
            self.log.warning("snapshot_failed", seq=info.seq, code=exc.code, reason=exc.message)
        finally:
            self._uploading = False
            self._upload_done.set()

    async def _upload(
        self, info: ProjectionSnapshot, encoded: list[bytes], msg: Msg | None
    ) -> None:
        """Compress the encoded model (from :meth:`_encode`) and store it as the snapshot."""
        started = time.monotonic()
        blob = await anyio.to_thread.run_sync(pack_snapshot, encoded, info)
        self.last_snapshot = await self.snapshots.save(self.projection, info, blob)
        seconds = time.monotonic() - started
        self._snapshot_cost += seconds
        self.log.info("snapshot_saved", seq=info.seq, size=len(blob), seconds=round(seconds, 3))
        if msg is not None:
            await self.consumer.ack_through(msg)

    async def snapshot_now(self) -> ProjectionSnapshot | None:
        """Take and store a snapshot now (when there is anything new); return it."""
        await self._upload_done.wait()
        if not self._snapshot_possible():
            return self.last_snapshot
        info, blob, msg = await self._encode()
        await self._upload(info, blob, msg)
        return self.last_snapshot

    # -- read-your-writes ----------------------------------------------------------------------

    async def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait until the read model reflects stream sequence ``seq``; False on timeout."""
        return await self.read_position.wait_for(seq, timeout)

    async def refresh_position(self) -> None:
        await self.read_position.refresh()

    def release_waiters(self) -> None:
        """Make every waiting read-your-writes query give up now (the replica is stopping)."""
        self.read_position.release()

    # -- reporting -----------------------------------------------------------------------------

    def digest(self) -> dict[str, Any]:
        """A fingerprint of the model and the sequence it reflects, to compare two replicas (or
        a rebuild) at the same sequence. Blocks while it encodes, so the model cannot change."""
        return {
            "digest": model_digest(self.model),
            "applied_seq": self.applied,
            "events": self.events,
            "version": self.projection.version,
        }

    def status(self) -> dict[str, Any]:
        """This replica's state, as ``cqrs status`` shows it (JSON-compatible)."""
        snapshot = self.last_snapshot or self.restored_from
        retrying = self.poison.retrying
        return {
            "projection": self.projection.name,
            "replica": self.replica,
            "schema": self.projection.version,
            "version": self.projection.version,
            "caught_up": None,
            "serving": None,
            **(self.standing() if self.standing is not None else {}),
            "stream": self.settings.stream,
            "consumer": self.consumer.name,
            "applied_seq": self.applied,
            "position": self.position,
            "events": self.events,
            "duplicates_skipped": self.duplicates,
            "dead_lettered": self.poison.dead_lettered,
            "policy": self.projection.on_poison,
            "state": "halted" if self.halted else "retrying" if retrying else "running",
            "halted": self.halted.to_dict() if self.halted else None,
            "retrying": retrying.to_dict() if retrying else None,
            "last_snapshot": snapshot.to_dict() if snapshot else None,
            "started_at": self.started_at,
        }


def model_digest(model: Any) -> str:
    """SHA-256 of a model's snapshot encoding: equal models built from the same events in the
    same order encode to the same bytes (dicts keep their insertion order)."""
    return hashlib.sha256(msgspec.msgpack.encode(model)).hexdigest()

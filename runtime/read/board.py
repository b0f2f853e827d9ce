"""Where projection replicas publish their state, and see every other replica's.

Each live replica keeps one entry in the JetStream KV bucket ``cqrs-replica-state``, keyed
``<projection>.v<version>.<replica>``: its version, the sequence its model reflects, how much is
left to apply, whether it has caught up and whether it takes queries. It rewrites the entry at
every change and at least every second, and deletes it when it stops. Entries expire with the
bucket's TTL, so a replica that is killed disappears within one TTL; since an expiry is not
announced to watchers, each reader also drops an entry it has not seen renewed for a TTL.

The replicas of a projection decide from this board which version answers its queries
(:mod:`runtime.read.election`); ``cqrs status`` reads it to show replicas that are catching up.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NATS
from nats.js import api
from nats.js.kv import KeyValue

from ..errors import CqrsError
from ..log import get_logger
from ..transport.nats_errors import nats_call
from ..transport.streams import bind_key_value

log = get_logger("runtime.read.board")

BUCKET = "cqrs-replica-state"


def state_key(projection: str, version: int, replica: str) -> str:
    return f"{projection}.v{version}.{replica}"


@dataclass
class ReplicaState:
    """What one replica says about itself on the board."""

    projection: str
    version: int
    replica: str
    position: int = 0  # the stream sequence its model reflects
    stream_last_seq: int = 0  # the stream's end when it last looked
    pending: int = 0  # commits of its aggregates not yet delivered to it
    rate: float = 0.0  # commits applied per second, lately
    caught_up: bool = False  # it applied everything there was when it started
    serving: bool = False  # it takes queries
    fenced: bool = False  # each answer waits for the stream's end (see runtime.read.election)
    halted: bool = False
    leaving: bool = False  # it is stopping: it serves until another replica has taken over
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    @property
    def key(self) -> str:
        return state_key(self.projection, self.version, self.replica)

    @property
    def lag(self) -> int:
        return max(0, self.stream_last_seq - self.position)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds until it has applied what is pending at its recent rate (None: unknown)."""
        if self.caught_up or self.pending == 0:
            return 0.0
        return round(self.pending / self.rate, 1) if self.rate > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lag": self.lag, "eta_seconds": self.eta_seconds}

    @classmethod
    def decode(cls, value: bytes | None) -> ReplicaState | None:
        with contextlib.suppress(orjson.JSONDecodeError, TypeError, ValueError):
            body = orjson.loads(value or b"")
            if isinstance(body, dict):
                known = {k: body[k] for k in cls.__dataclass_fields__ if k in body}
                state = cls(**known)
                if isinstance(state.version, int) and isinstance(state.projection, str):
                    return state
        return None


async def state_bucket(nc: NATS, *, ttl: float, replicas: int = 1) -> KeyValue:
    """The board's bucket, created when missing (memory storage: the entries are renewed every
    second and expire anyway)."""
    js = nc.jetstream(timeout=10.0)
    what = f"the replica state bucket {BUCKET!r}"
    config = api.KeyValueConfig(
        bucket=BUCKET,
        description="projection replicas' state: version, position, caught up, serving",
        history=1,
        ttl=ttl,
        replicas=replicas,
        storage=api.StorageType.MEMORY,
    )
    return await bind_key_value(js, config, what)


class Board:
    """One projection's board as one replica sees it: its own entry and the others'."""

    def __init__(self, kv: KeyValue, projection: str, ttl: float) -> None:
        self.kv = kv
        self.projection = projection
        self.ttl = ttl
        self.changed = anyio.Event()  # set at every entry seen; replaced by the reader
        # Set once the watch has delivered every entry the board held when it began: before
        # that, a replica missing from the view may be one that serves.
        self.complete = anyio.Event()
        self._entries: dict[str, tuple[ReplicaState, float]] = {}  # key -> (state, seen at)
        self._revision: int | None = None

    def others(self, own_key: str) -> list[ReplicaState]:
        """The live entries but ``own_key``'s (not renewed for a TTL: gone)."""
        now = anyio.current_time()
        return [
            state
            for key, (state, seen) in self._entries.items()
            if key != own_key and now - seen <= self.ttl
        ]

    async def publish(self, state: ReplicaState) -> None:
        """Write ``state`` as this replica's entry."""
        with nats_call(f"publishing the state of replica {state.replica!r}"):
            await self.kv.put(state.key, orjson.dumps(state.to_dict()))

    async def withdraw(self, state: ReplicaState) -> None:
        with contextlib.suppress(CqrsError, nats.errors.Error, nats.js.errors.Error):
            await self.kv.delete(state.key)

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[Board]:
        """Keep the entries current (through a KV watch, restarted when it fails)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def _watch(self) -> None:
        failures = 0
        while True:
            try:
                watcher = await self.kv.watch(f"{self.projection}.>")
                try:
                    failures = 0
                    while True:
                        try:
                            entry = await watcher.updates(timeout=self.ttl)  # type: ignore[no-untyped-call]
                        except nats.errors.TimeoutError:
                            continue
                        if entry is None:  # the entries there were when the watch began
                            self.complete.set()
                            self.changed.set()
                        else:
                            self._seen(entry)
                finally:
                    with contextlib.suppress(Exception):
                        await watcher.stop()  # type: ignore[no-untyped-call]
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                failures += 1
                log.warning("replica_board_watch_failed", error=str(exc) or type(exc).__name__)
                await anyio.sleep(min(5.0, 0.2 * failures))

    def _seen(self, entry: KeyValue.Entry) -> None:
        if entry.operation in ("DEL", "PURGE"):
            self._entries.pop(entry.key, None)
        else:
            state = ReplicaState.decode(entry.value)
            if state is not None:
                self._entries[entry.key] = (state, anyio.current_time())
        self.changed.set()


async def read_board(nc: NATS, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every live replica's entry, empty when there is no board yet.

    A board that cannot be read whole in time raises (:class:`~runtime.errors.Timeout`,
    :class:`~runtime.errors.Unavailable`) rather than answer with what was read so far: a caller
    deciding on a partial board (``cqrs projections retire``) would take a live replica for gone.
    """
    js = nc.jetstream(timeout=timeout)
    with nats_call(f"reading the replica board {BUCKET!r}"):
        try:
            kv = await js.key_value(BUCKET)
        except nats.js.errors.BucketNotFoundError:
            return []
        out: list[dict[str, Any]] = []
        watcher = await kv.watchall(ignore_deletes=True)
        try:
            while (entry := await watcher.updates(timeout)) is not None:  # type: ignore[no-untyped-call]
                state = ReplicaState.decode(entry.value)
                if state is not None:
                    out.append(state.to_dict())
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
    return sorted(out, key=lambda s: (s["projection"], s["version"], s["replica"]))

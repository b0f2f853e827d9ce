"""The state of process manager instances: one KV entry per instance, written by
compare-and-set.

An entry holds the instance's state, the position of the last event it reacted to (so a
redelivered event changes nothing), its running timers (name -> timer id, so a timer that was
cancelled or replaced but fired anyway is recognised and ignored) and its *outbox*: the commands
and timer changes its last reaction decided and that are not yet known to be done. The reaction
and its outbox are stored in one write before anything is sent; whoever finds an outbox sends it
again with the same ids, so a crash between storing and sending loses nothing, and the
deterministic ids make the second sending change nothing.
"""

from __future__ import annotations

from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import api
from nats.js.kv import KeyValue

from ..errors import Internal, NoResponders, PermissionDenied
from ..log import get_logger
from ..transport.direct_get import DirectGetter
from ..transport.nats_errors import WRONG_LAST_SEQUENCE_CODES, nats_call
from ..transport.publisher import Publisher, Refused
from ..transport.streams import bind_key_value
from ..wire import codec
from ..wire.envelope import H_EXPECTED_LAST_SUBJECT_SEQ, RawMessage

log = get_logger("runtime.processes.instances")

H_KV_OPERATION = "KV-Operation"
REMOVED = ("DEL", "PURGE")  # KV-Operation of a deleted or purged entry's marker


class CasConflict(Exception):
    """Raised when an instance entry changed since it was read (another reaction won)."""


# Outbox and Instance are frozen msgspec Structs, not frozen dataclasses: several are made and
# copied per event, and a frozen dataclass costs ten times as much to make and twenty to copy.
class Outbox(msgspec.Struct, frozen=True):
    """What one reaction still has to do: commands to send and timer changes to apply."""

    commands: tuple[dict[str, Any], ...] = ()
    timers: tuple[dict[str, Any], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.commands or self.timers)


class Instance(msgspec.Struct, frozen=True):
    """One process manager instance as stored, and the revision it was read at."""

    state: Any  # the state's stored (JSON) form; None for an instance never stored
    position: tuple[int, int] = (0, -1)  # (stream sequence, event index) last reacted to
    timers: dict[str, str] = msgspec.field(default_factory=dict)
    outbox: Outbox = Outbox()
    # Set while the instance is parked (see runtime/processes/parking.py): the first parked
    # trigger, its error and the last trigger parked behind it. None: the instance reacts.
    parked: dict[str, Any] | None = None
    revision: int = 0  # 0: not stored yet

    def to_wire(self, state_version: int) -> bytes:
        return codec.dumps(
            {
                "v": state_version,
                "state": self.state,
                "position": list(self.position),
                "timers": self.timers,
                "outbox": {"commands": self.outbox.commands, "timers": self.outbox.timers},
                **({"parked": self.parked} if self.parked else {}),
            }
        )

    @classmethod
    def from_wire(cls, data: bytes, revision: int) -> Instance:
        body = codec.loads(data)
        outbox = body.get("outbox") or {}
        seq, index = body.get("position") or (0, -1)
        return cls(
            state=body.get("state"),
            position=(int(seq), int(index)),
            timers=dict(body.get("timers") or {}),
            outbox=Outbox(tuple(outbox.get("commands") or ()), tuple(outbox.get("timers") or ())),
            parked=body.get("parked") or None,
            revision=revision,
        )


class InstanceStore:
    """Reads and compare-and-sets instance entries in the bucket ``cqrs-processes``."""

    def __init__(self, nc: NATS, *, bucket: str = "cqrs-processes", replicas: int = 1) -> None:
        self.nc = nc
        self.timeout = 5.0  # seconds, for each JetStream call
        self.js = nc.jetstream(timeout=self.timeout)
        self.bucket = bucket
        self.replicas = replicas
        self._kv: KeyValue | None = None
        # For the batched reads and pipelined writes (get_many, put_many), made on first use.
        self._getter: DirectGetter | None = None
        self._batched = True  # until the server refuses a batched read
        self._publisher: Publisher | None = None

    async def start(self) -> None:
        """Bind the bucket, creating it when it does not exist yet."""
        config = api.KeyValueConfig(
            bucket=self.bucket,
            description="cqrs process manager instances",
            history=1,
            replicas=self.replicas,
            storage=api.StorageType.FILE,
            direct=True,
        )
        self._kv = await bind_key_value(self.js, config, f"the process bucket {self.bucket!r}")

    async def stop(self) -> None:
        """Drop the subscriptions of the batched reads and writes (the store can start them
        again on its next use)."""
        getter, self._getter = self._getter, None
        publisher, self._publisher = self._publisher, None
        if getter is not None:
            await getter.stop()
        if publisher is not None:
            await publisher.stop()

    @property
    def kv(self) -> KeyValue:
        if self._kv is None:
            raise Internal("the instance store is not started")
        return self._kv

    async def get(self, manager: str, key: str) -> Instance:
        with nats_call(f"reading instance {manager}.{key}"):
            try:
                entry = await self.kv.get(f"{manager}.{key}")
            except nats.js.errors.KeyNotFoundError:
                return Instance(state=None)
        if entry.value is None:
            return Instance(state=None)
        return Instance.from_wire(entry.value, entry.revision or 0)

    async def put(self, manager: str, key: str, instance: Instance, state_version: int) -> Instance:
        """Store ``instance`` if its entry is still at ``instance.revision``; return it with its
        new revision. Raises :class:`CasConflict` when the entry changed since."""
        value = instance.to_wire(state_version)
        name = f"{manager}.{key}"
        with nats_call(f"storing instance {name}"):
            try:
                if instance.revision:
                    revision = await self.kv.update(name, value, last=instance.revision)
                else:
                    revision = await self.kv.create(name, value)
            except nats.js.errors.KeyWrongLastSequenceError:
                raise CasConflict(name) from None
            except nats.js.errors.APIError as exc:
                if exc.err_code in WRONG_LAST_SEQUENCE_CODES:  # the same, as a plain API error
                    raise CasConflict(name) from None
                raise
        return msgspec.structs.replace(instance, revision=revision)

    def _subject(self, manager: str, key: str) -> str:
        return f"$KV.{self.bucket}.{manager}.{key}"  # where KV keeps the entry (ADR-8)

    async def get_many(self, manager: str, keys: list[str]) -> dict[str, Instance]:
        """The entries of ``keys``, as :meth:`get` reads each, with one batched direct get
        (``multi_last`` on the bucket's stream) for all of them.

        Each entry comes with the revision it was read at, so a write based on it is a
        compare-and-set like any other: an entry changed after this read makes it conflict.
        A key that is not a plain subject (a wildcard in it) is read alone, by :meth:`get`.
        """
        plain: dict[str, str] = {}  # subject -> key
        found: dict[str, Instance] = {}
        for key in keys:
            if "*" in key or ">" in key:
                found[key] = await self.get(manager, key)
            else:
                plain[self._subject(manager, key)] = key
        messages = await self._last_of(manager, list(plain)) if self._batched else None
        if messages is None:
            return {**found, **{k: await self.get(manager, k) for k in plain.values()}}
        for msg in messages:
            asked = plain.get(msg.subject)
            if asked is None:
                continue
            if msg.headers.get(H_KV_OPERATION) in REMOVED:
                found[asked] = Instance(state=None)  # as get() reads a deleted entry
            else:
                found[asked] = Instance.from_wire(msg.data, msg.seq)
        for k in plain.values():  # not in the reply: never stored
            found.setdefault(k, Instance(state=None))
        return found

    async def _last_of(self, manager: str, subjects: list[str]) -> list[RawMessage] | None:
        """The newest message of each of ``subjects`` in one batched direct get; None once the
        server refused one: a bucket made without direct gets (allow_direct), or a user allowed
        to read only its own managers' keys (see runtime.ops.permissions) reads one by one."""
        if self._getter is None:
            getter = DirectGetter(self.nc, f"KV_{self.bucket}", timeout=self.timeout)
            await getter.start()
            self._getter = getter
        try:
            with nats_call(f"reading instances of {manager}"):
                return await self._getter.last_of_subjects(subjects)
        except (NoResponders, PermissionDenied) as exc:
            self._batched = False
            log.info("instance_reads_one_by_one", bucket=self.bucket, reason=exc.message)
            return None

    async def put_many(
        self, manager: str, entries: list[tuple[str, Instance]], state_version: int
    ) -> list[Instance | Exception]:
        """:meth:`put` for each of ``entries`` (key, instance), every write sent before any
        acknowledgement is awaited; each one's result in order: the instance with its new
        revision, :class:`CasConflict`, or the error of its write (it may have landed or not:
        read the entry again). An entry read as never stored is created only if it still
        does not exist (a deleted entry then conflicts: :meth:`put` re-creates it)."""
        if self._publisher is None:
            self._publisher = Publisher(self.nc, self.timeout)
        messages = [
            (
                self._subject(manager, key),
                instance.to_wire(state_version),
                {H_EXPECTED_LAST_SUBJECT_SEQ: str(instance.revision)},
            )
            for key, instance in entries
        ]
        results: list[Instance | Exception] = []
        acks = await self._publisher.publish_many(messages)
        for (key, instance), ack in zip(entries, acks, strict=True):
            if isinstance(ack, Refused) and ack.conflict:
                results.append(CasConflict(f"{manager}.{key}"))
            elif isinstance(ack, Refused):
                results.append(ack.as_error(f"storing instance {manager}.{key}"))
            elif isinstance(ack, Exception):
                results.append(ack)
            else:
                results.append(msgspec.structs.replace(instance, revision=ack.seq))
        return results

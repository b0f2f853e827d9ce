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

from dataclasses import dataclass, field, replace
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import api
from nats.js.kv import KeyValue

from ..errors import Internal
from ..transport.nats_errors import nats_call
from ..transport.streams import bind_key_value
from ..wire import codec

WRONG_LAST_SEQUENCE = 10071


class CasConflict(Exception):
    """Raised when an instance entry changed since it was read (another reaction won)."""


@dataclass(frozen=True, slots=True)
class Outbox:
    """What one reaction still has to do: commands to send and timer changes to apply."""

    commands: tuple[dict[str, Any], ...] = ()
    timers: tuple[dict[str, Any], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.commands or self.timers)


@dataclass(frozen=True, slots=True)
class Instance:
    """One process manager instance as stored, and the revision it was read at."""

    state: Any  # the state's stored (JSON) form; None for an instance never stored
    position: tuple[int, int] = (0, -1)  # (stream sequence, event index) last reacted to
    timers: dict[str, str] = field(default_factory=dict)
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
        self.js = nc.jetstream(timeout=5.0)
        self.bucket = bucket
        self.replicas = replicas
        self._kv: KeyValue | None = None

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
                if exc.err_code == WRONG_LAST_SEQUENCE:  # the same, as a plain API error
                    raise CasConflict(name) from None
                raise
        return replace(instance, revision=revision)

"""A durable pull consumer shared by every replica of a process manager, pinned to one of them.

Process managers must see the events of one instance in order, and each event once, so their
replicas do not each get a consumer (as projection replicas do): they share one, in a priority
group with the ``pinned_client`` policy (ADR-42, nats-server 2.11+). The server delivers to one
replica at a time (the one holding the pin id it handed out); when that replica stops pulling for
``pin_timeout`` the pin moves to another, which then gets the first unacknowledged messages.

nats-py 2.16 neither creates priority-group consumers nor pulls with a group, so this module
speaks the raw JetStream API for both (``$JS.API.CONSUMER.CREATE`` and ``.MSG.NEXT``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ..errors import ConfigurationError
from ..log import get_logger
from ..transport.nats_errors import jetstream_setup, nats_call
from ..transport.startup import jetstream_call, raise_if_transient
from ..wire import codec

log = get_logger("runtime.processes.pinned")

GROUP = "cqrs"
H_PIN_ID = "Nats-Pin-Id"
NANOS = 1_000_000_000


class PinnedConsumer:
    """Creates one shared consumer and fetches batches from it while this replica holds the pin."""

    def __init__(
        self,
        nc: NATS,
        *,
        stream: str,
        name: str,
        subjects: list[str],
        description: str,
        deliver_all: bool,
        ack_wait: float,
        pin_timeout: float,
        max_ack_pending: int,
        timeout: float = 5.0,
    ) -> None:
        self.nc = nc
        self.stream = stream
        self.name = name
        self.subjects = subjects
        self.description = description
        self.deliver_all = deliver_all
        self.ack_wait = ack_wait
        self.pin_timeout = pin_timeout
        self.max_ack_pending = max_ack_pending
        self.timeout = timeout
        self.pin: str | None = None
        self.log = log.bind(consumer=name, stream=stream)

    async def _api(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        what = f"consumer {self.name}"

        async def request() -> dict[str, Any]:
            msg = await self.nc.request(subject, codec.dumps(body), timeout=self.timeout)
            reply: dict[str, Any] = codec.loads(msg.data)
            if "error" in reply:
                raise_if_transient(reply["error"])  # waited out during start-up
            return reply

        with jetstream_setup(what):
            return await jetstream_call(what, request)

    async def start(self) -> None:
        """Create the consumer, or check the existing one (its position is kept)."""
        config: dict[str, Any] = {
            "durable_name": self.name,
            "name": self.name,
            "description": self.description,
            "deliver_policy": "all" if self.deliver_all else "new",
            "ack_policy": "explicit",
            "ack_wait": int(self.ack_wait * NANOS),
            "max_deliver": -1,
            "max_ack_pending": self.max_ack_pending,
            "replay_policy": "instant",
            "priority_groups": [GROUP],
            "priority_policy": "pinned_client",
            "priority_timeout": int(self.pin_timeout * NANOS),
        }
        if len(self.subjects) == 1:
            config["filter_subject"] = self.subjects[0]
        else:
            config["filter_subjects"] = self.subjects
        info = await self._api(f"$JS.API.CONSUMER.INFO.{self.stream}.{self.name}", {})
        if "error" not in info:
            existing = info.get("config") or {}
            # A consumer keeps its position; only settings that may change are updated.
            config["deliver_policy"] = existing.get("deliver_policy", config["deliver_policy"])
            for field in ("opt_start_seq", "opt_start_time"):
                if field in existing:
                    config[field] = existing[field]
        reply = await self._api(
            f"$JS.API.CONSUMER.CREATE.{self.stream}.{self.name}",
            {"stream_name": self.stream, "config": config},
        )
        if "error" in reply:
            error = reply["error"]
            raise ConfigurationError(
                f"cannot set up consumer {self.name}: {error.get('description')}",
                details={"consumer": self.name, "err_code": error.get("err_code")},
            )

    async def fetch(self, batch: int, expires: float) -> list[Msg]:
        """Up to ``batch`` messages, waiting up to ``expires`` seconds for the first; none while
        another replica holds the pin.

        As nats-py's ``fetch`` does, it first takes what is there without waiting, and only
        when nothing is waits for one message: a request for a whole batch would otherwise be
        held by the server until the batch fills or expires, delaying a lone event (or timer)
        by up to ``expires``.
        """
        msgs = await self._pull({"batch": batch, "no_wait": True}, batch, self.timeout)
        if msgs:
            return msgs
        return await self._pull({"batch": 1, "expires": int(expires * NANOS)}, 1, expires)

    async def _pull(self, request: dict[str, Any], batch: int, expires: float) -> list[Msg]:
        request["group"] = GROUP
        if self.pin:
            request["id"] = self.pin
        send, receive = anyio.create_memory_object_stream[Msg](batch + 8)

        async def deliver(msg: Msg) -> None:
            with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
                send.send_nowait(msg)

        inbox = self.nc.new_inbox()
        with nats_call(f"pulling from consumer {self.name}"):
            sub = await self.nc.subscribe(inbox, cb=deliver)
            await self.nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.name}",
                codec.dumps(request),
                reply=inbox,
            )
        msgs: list[Msg] = []
        try:
            with anyio.move_on_after(expires + self.timeout):
                async for msg in receive:
                    status = (msg.headers or {}).get("Status")
                    if status:
                        self._on_status(status, (msg.headers or {}).get("Description", ""))
                        break
                    pin = (msg.headers or {}).get(H_PIN_ID)
                    if pin and pin != self.pin:
                        self.log.info("consumer_pinned", pin=pin)
                        self.pin = pin
                    msgs.append(msg)
                    if len(msgs) >= batch:
                        break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            send.close()
            receive.close()
        return msgs

    def _on_status(self, status: str, description: str) -> None:
        if status == "423":  # the pin moved to another replica
            if self.pin is not None:
                self.log.info("consumer_unpinned", pin=self.pin)
            self.pin = None
        elif status not in ("404", "408", "409"):  # no messages, expired, leadership change
            self.log.warning("fetch_status", status=status, description=description)

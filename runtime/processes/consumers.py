"""The durable pull consumers of one process manager partition: its events and its timers.

Only the partition's owner pulls from them (it holds the partition's lease), so they need no
priority group: explicit acks and ``ack_wait`` give what an owner killed mid-batch held to the
next owner, which finds what the old one did in the instances' entries.
"""

from __future__ import annotations

import contextlib
from typing import Any

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api

from ..errors import Internal
from ..transport.nats_errors import jetstream_setup, nats_call, translate
from ..transport.startup import jetstream_call

log = structlog.get_logger("runtime.processes.consumers")


class PartitionConsumer:
    """Creates (or binds) one durable consumer and fetches batches from it."""

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
        max_ack_pending: int,
        fetch_timeout: float,
        timeout: float = 5.0,
    ) -> None:
        self.js = nc.jetstream(timeout=timeout)
        self.stream = stream
        self.name = name
        self.subjects = subjects
        self.description = description
        self.deliver_all = deliver_all
        self.ack_wait = ack_wait
        self.max_ack_pending = max_ack_pending
        self.fetch_timeout = fetch_timeout
        self._sub: Any = None

    async def start(self) -> None:
        """Create the consumer if it does not exist (an existing one keeps its position), and
        bind it."""
        what = f"consumer {self.name}"
        config = api.ConsumerConfig(
            name=self.name,
            durable_name=self.name,
            description=self.description,
            deliver_policy=api.DeliverPolicy.ALL if self.deliver_all else api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=-1,
            max_ack_pending=self.max_ack_pending,
            replay_policy=api.ReplayPolicy.INSTANT,
        )
        if len(self.subjects) == 1:
            config.filter_subject = self.subjects[0]
        else:
            config.filter_subjects = self.subjects
        with jetstream_setup(what):
            try:
                await jetstream_call(what, lambda: self.js.consumer_info(self.stream, self.name))
            except nats.js.errors.NotFoundError:
                await jetstream_call(what, lambda: self.js.add_consumer(self.stream, config))
            self._sub = await self.js.pull_subscribe_bind(self.name, stream=self.stream)

    async def fetch(self, batch: int) -> list[Msg]:
        """Up to ``batch`` messages, waiting up to ``fetch_timeout`` when there are none."""
        if self._sub is None:
            raise Internal(f"consumer {self.name} is not started")
        try:
            msgs: list[Msg] = await self._sub.fetch(batch, timeout=self.fetch_timeout)
        except (nats.errors.TimeoutError, TimeoutError):
            return []  # nothing there (or no heartbeat during a leader change): try again
        except nats.errors.Error as exc:
            raise translate(exc, f"a fetch from consumer {self.name}") from None
        return msgs

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):  # a closed connection: nothing left to undo
                await self._sub.unsubscribe()
            self._sub = None

    async def pending(self) -> int:
        """Messages not yet acknowledged (delivered or not)."""
        with nats_call(f"reading consumer {self.name}"):
            info = await self.js.consumer_info(self.stream, self.name)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

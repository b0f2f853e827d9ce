"""The durable pull consumers of one process manager partition: its events and its timers.

Only the partition's owner pulls from them (it holds the partition's lease). Whoever takes a
partition rewinds its consumers to what was acknowledged (:meth:`PartitionConsumer.rewind`), so
what an owner killed mid-batch held comes again, in order, to the next owner, which finds what
the old one did in the instances' entries.
"""

from __future__ import annotations

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api

from ..errors import Internal
from ..log import get_logger
from ..transport.nats_errors import jetstream_setup
from ..transport.pull import Puller
from ..transport.startup import jetstream_call

log = get_logger("runtime.processes.consumers")


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
        ack_all: bool = False,
        start_seq: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=timeout)
        self.ack_all = ack_all  # AckPolicy.ALL: acknowledging a batch's last message is enough
        self.stream = stream
        self.name = name
        self.subjects = subjects
        self.description = description
        self.deliver_all = deliver_all
        self.start_seq = start_seq  # where a new consumer starts, instead of deliver_all
        self.ack_wait = ack_wait
        self.max_ack_pending = max_ack_pending
        self.fetch_timeout = fetch_timeout
        self._sub: Puller | None = None

    async def create(self) -> None:
        """Create the consumer if it does not exist (an existing one keeps its position)."""
        what = f"consumer {self.name}"
        config = api.ConsumerConfig(
            name=self.name,
            durable_name=self.name,
            description=self.description,
            deliver_policy=api.DeliverPolicy.ALL if self.deliver_all else api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.ALL if self.ack_all else api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=-1,
            max_ack_pending=self.max_ack_pending,
            replay_policy=api.ReplayPolicy.INSTANT,
        )
        if self.start_seq is not None:
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self.start_seq
        if len(self.subjects) == 1:
            config.filter_subject = self.subjects[0]
        else:
            config.filter_subjects = self.subjects
        with jetstream_setup(what):
            try:
                info = await jetstream_call(
                    what, lambda: self.js.consumer_info(self.stream, self.name)
                )
            except nats.js.errors.NotFoundError:
                info = await jetstream_call(what, lambda: self.js.add_consumer(self.stream, config))
        # An existing consumer keeps the policy it was made with.
        self.ack_all = info.config.ack_policy == api.AckPolicy.ALL

    async def acknowledge(self, msgs: list[Msg]) -> None:
        """Acknowledge a batch that is done (its last message only, with AckPolicy.ALL)."""
        for msg in msgs[-1:] if self.ack_all else msgs:
            try:
                await msg.ack()
            except Exception as exc:  # the connection is gone: the redelivery changes nothing
                log.debug("ack_failed", consumer=self.name, error=repr(exc))

    async def bind(self) -> None:
        """Subscribe to the consumer to fetch from it (it exists: :meth:`create`)."""
        puller = Puller(self.nc, self.stream, self.name)
        await puller.start()
        self._sub = puller

    async def fetch(self, batch: int) -> list[Msg]:
        """Up to ``batch`` messages, waiting up to ``fetch_timeout`` when there are none."""
        if self._sub is None:
            raise Internal(f"consumer {self.name} is not started")
        return await self._sub.fetch(batch, self.fetch_timeout)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.stop()

    async def rewind(self) -> None:
        """Deliver again, in stream order, everything not acknowledged yet (ADR-60 reset to
        the ack floor), and bind a fresh inbox so nothing delivered before can still arrive.

        A partition's consumer is read by one owner at a time and acknowledged a batch at a
        time, so everything below the ack floor is done. Redeliveries after ``ack_wait`` give
        no such order (a newer message may be delivered before an expired one), so whoever
        takes a partition, or gives up a batch, rewinds first: an instance never sees a later
        event before an earlier one."""
        what = f"consumer {self.name}"
        with jetstream_setup(what):
            info = await jetstream_call(what, lambda: self.js.consumer_info(self.stream, self.name))
            if info.num_ack_pending:
                # Without a sequence: the server resumes right above the ack floor. A sequence
                # is refused ("invalid reset: not allowed") for a consumer that delivers only
                # new messages, as a partition's consumer does unless started from the first.
                await jetstream_call(what, lambda: self.js.reset_consumer(self.stream, self.name))
        await self.stop()
        await self.bind()

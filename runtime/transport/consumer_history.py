"""Reading one subject's history through an ephemeral consumer: reads a permission can scope.

Batched direct get names the subject in its request body, so NATS permissions cannot narrow it
below the whole stream. A consumer created on the subject-suffixed API
``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`` can be: the server refuses a body whose
filter differs from the subject's (10131) or that adds ``filter_subjects`` (10137), so the grant
``$JS.API.CONSUMER.CREATE.EVENTS.*.events.order.>`` lets a worker read ``order`` events only.

Each read creates a push consumer delivering to an inbox of its own (ack none, no flow control,
in memory, one replica) from the first sequence wanted, unless the subject's newest message
(by direct get) shows there is nothing to read. The create reply says how many messages
are pending; each delivery's reply subject says how many remain, so the read ends at zero
without a heartbeat or a timeout. The reader never deletes its consumers (a delete grant cannot
be scoped to them): it unsubscribes, and the server removes the consumer once its inbox has had
no interest for ``inactive_threshold``. The newest message still comes from the subject-scoped
direct get, which needs no consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ..errors import Internal, JetStreamError, Timeout
from ..wire import codec
from ..wire.envelope import H_EXPECTED_LAST_SUBJECT_SEQ, RawMessage
from ..wire.timestamps import format_timestamp
from .direct_get import Cut, DirectGetter
from .nats_errors import nats_call


class _Read:
    """The deliveries of one consumer, collected by the subscription's callback until the last."""

    __slots__ = ("cut", "done", "out", "subject")

    def __init__(self, subject: str, cut: Cut) -> None:
        self.subject = subject
        self.cut = cut
        self.out: list[RawMessage] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def add(self, msg: Msg) -> None:
        if self.done.done() or not msg.reply.startswith("$JS.ACK."):
            return  # late, or not a delivery (nothing else is asked for on this inbox)
        # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>, or the same
        # after a domain and an account hash (and with a token more) in the newer form.
        tokens = msg.reply.split(".")
        at = 5 if len(tokens) == 9 else 7
        raw = RawMessage(
            seq=int(tokens[at]),
            subject=self.subject,
            timestamp=format_timestamp(int(tokens[at + 2])),
            headers=msg.headers or {},
            data=msg.data,
        )
        if self.cut.past(raw):  # the rest is not wanted
            self.done.set_result(None)
            return
        self.out.append(raw)
        up_to = self.cut.up_to_seq
        if tokens[at + 3] == "0" or (up_to is not None and raw.seq >= up_to):
            self.done.set_result(None)


class ConsumerHistoryReader:
    """Subject histories through scoped ephemeral consumers; newest messages by direct get."""

    def __init__(
        self,
        nc: NATS,
        stream: str,
        *,
        timeout: float = 5.0,
        inactive_threshold: float = 1.0,
        newest: DirectGetter | None = None,
    ) -> None:
        """``newest``: a started direct getter of the stream to share (its owner starts and
        stops it), else one of its own."""
        self._nc = nc
        self._stream = stream
        self._timeout = timeout
        self._inactive_ns = int(inactive_threshold * 1_000_000_000)
        self._owns_newest = newest is None
        self._newest = newest or DirectGetter(nc, stream, timeout=timeout)

    async def start(self) -> None:
        if self._owns_newest:
            await self._newest.start()

    async def stop(self) -> None:
        if self._owns_newest:
            await self._newest.stop()

    async def last_for_subject(self, subject: str) -> RawMessage | None:
        return await self._newest.last_for_subject(subject)

    async def at(self, subject: str, seq: int) -> RawMessage | None:
        """The message at stream sequence ``seq`` when it is on ``subject``, else None."""
        newest = await self._newest.last_for_subject(subject)
        if newest is None or newest.seq <= seq:
            return newest if newest is not None and newest.seq == seq else None
        found = await self._consumed(subject, seq - 1, Cut(seq, None))
        return found[0] if found and found[0].seq == seq else None

    async def subject_history(
        self,
        subject: str,
        *,
        after_seq: int = 0,
        up_to_seq: int | None = None,
        up_to_time: str | None = None,
    ) -> list[RawMessage]:
        """Every message on ``subject`` (a literal subject) with a sequence above
        ``after_seq``, in order; ``up_to_seq`` and ``up_to_time`` (RFC 3339) keep only the
        messages at or before them.

        The subject's newest message is asked first, by the scoped direct get that any replica
        answers: a new aggregate, one with nothing after ``after_seq`` or with one commit after
        it needs no consumer.
        """
        newest = await self._newest.last_for_subject(subject)
        if newest is None or newest.seq <= after_seq:
            return []
        cut = Cut(up_to_seq, up_to_time)
        if newest.headers.get(H_EXPECTED_LAST_SUBJECT_SEQ) == str(after_seq):
            # Published with the concurrency check, the newest message names its predecessor:
            # it is all there is after ``after_seq`` (a commit that landed before its ack was
            # lost, another writer's one commit), with no consumer and no stream leader needed.
            return [] if cut.past(newest) else [newest]
        return await self._consumed(subject, after_seq, cut)

    async def _consumed(self, subject: str, after_seq: int, cut: Cut) -> list[RawMessage]:
        """The messages on ``subject`` after ``after_seq`` up to ``cut``, through a consumer."""
        read = _Read(subject, cut)
        inbox = self._nc.new_inbox()
        name = f"cqrs_h_{secrets.token_hex(8)}"
        config: dict[str, Any] = {
            "name": name,
            "filter_subject": subject,
            "deliver_subject": inbox,
            "deliver_policy": "by_start_sequence",
            "opt_start_seq": after_seq + 1,
            "ack_policy": "none",
            "flow_control": False,
            "inactive_threshold": self._inactive_ns,
            "mem_storage": True,
            "num_replicas": 1,
        }
        body = {"stream_name": self._stream, "config": config, "action": "create"}
        what = f"a history read of {subject} on stream {self._stream}"
        with nats_call(what):
            sub = await self._nc.subscribe(inbox, cb=read.add)
        try:
            with nats_call(what):
                reply = await self._nc.request(
                    f"$JS.API.CONSUMER.CREATE.{self._stream}.{name}.{subject}",
                    codec.dumps(body),
                    timeout=self._timeout,
                )
            info = codec.loads(reply.data)
            error = info.get("error")
            if error is not None:
                raise JetStreamError(
                    f"JetStream refused {what}: {error.get('description', error)}",
                    details={"err_code": error.get("err_code"), "status": error.get("code")},
                )
            if not isinstance(info.get("num_pending"), int):
                raise Internal(f"unexpected answer to {what}")
            if info["num_pending"] > 0:
                await self._delivered(read, what)
        finally:
            with contextlib.suppress(Exception):  # the connection may already be closed
                await sub.unsubscribe()
        return read.out

    async def _delivered(self, read: _Read, what: str) -> None:
        """Wait for the read's last delivery; time out only while no delivery arrives."""
        seen = -1
        while seen < len(read.out):
            seen = len(read.out)
            try:
                await asyncio.wait_for(asyncio.shield(read.done), self._timeout)
                return
            except TimeoutError:
                continue
        raise Timeout(f"{what} timed out")

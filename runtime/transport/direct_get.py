"""Raw JetStream API calls that nats-py does not wrap.

Batched direct get (ADR-31) is the fastest way to read one subject's history: one request, many
replies, closed by a ``204 EOB`` status message. nats-py has no call for it, so this module keeps
one wildcard inbox subscription per connection and routes each batch's replies to its reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncGenerator, Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ..errors import Internal, NoResponders, PermissionDenied, Timeout
from ..wire import codec
from ..wire.envelope import RawMessage
from ..wire.timestamps import stored_timestamp, timestamp_ns
from .nats_errors import nats_call
from .refusals import watch_replies

# nats-server answers a multi_last request for more subjects with "413 Too Many Results".
MULTI_LAST_LIMIT = 1024


class Cut:
    """Where a history read stops: at a stream sequence and/or an RFC 3339 time (inclusive)."""

    __slots__ = ("limit_ns", "up_to_seq")

    def __init__(self, up_to_seq: int | None, up_to_time: str | None) -> None:
        self.up_to_seq = up_to_seq
        self.limit_ns = timestamp_ns(up_to_time) if up_to_time is not None else None

    def past(self, msg: RawMessage) -> bool:
        """Whether ``msg`` comes after the cut."""
        return (self.up_to_seq is not None and msg.seq > self.up_to_seq) or (
            self.limit_ns is not None and timestamp_ns(msg.timestamp) > self.limit_ns
        )


class _Batch:
    """The replies of one batch request, collected by the subscription's callback.

    Collecting there and waking the reader once, when the batch ends, instead of once per
    message keeps a long history read from costing a task switch and a timer per event.
    """

    __slots__ = ("done", "error", "out", "pending")

    def __init__(self, out: list[RawMessage]) -> None:
        self.out = out
        self.pending = 0
        self.error: str | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def add(self, msg: Msg) -> None:
        if self.done.done():
            return
        headers = msg.headers or {}
        status = headers.get("Status")
        if status == "204":
            self.pending = int(headers.get("Nats-Num-Pending", "0"))
        elif status and status != "404":
            self.error = f"{status} {headers.get('Description', '')}"
        elif not status:
            self.out.append(
                RawMessage(
                    seq=int(headers["Nats-Sequence"]),
                    subject=headers["Nats-Subject"],
                    timestamp=stored_timestamp(headers.get("Nats-Time-Stamp", "")),
                    headers=headers,
                    data=msg.data,
                )
            )
            if "Nats-Num-Pending" in headers:  # more replies of this batch follow
                return
        self.done.set_result(None)

    def fail(self, error: PermissionDenied) -> bool:
        if self.done.done():
            return False
        self.done.set_exception(error)
        return True


class DirectGetter:
    """Batched direct gets on one stream over one shared reply subscription."""

    def __init__(self, nc: NATS, stream: str, *, timeout: float = 5.0, batch: int = 500) -> None:
        self._nc = nc
        self._stream = stream
        self._timeout = timeout
        self._batch = batch
        self._prefix = nc.new_inbox()
        self._ids = itertools.count()
        self._waiting: dict[str, _Batch] = {}
        self._sub: Any = None
        self._unwatch: Callable[[], None] = lambda: None

    async def start(self) -> None:
        with nats_call(f"reading stream {self._stream}"):
            self._sub = await self._nc.subscribe(self._prefix + ".*", cb=self._route)
        self._unwatch = watch_replies(self._nc, self._prefix + ".", self._refused)

    def _refused(self, reply: str, error: PermissionDenied) -> bool:
        batch = self._waiting.get(reply.rsplit(".", 1)[1])
        return batch is not None and batch.fail(error)

    async def stop(self) -> None:
        self._unwatch()
        if self._sub is not None:
            with contextlib.suppress(Exception):  # the connection may already be closed
                await self._sub.unsubscribe()
            self._sub = None

    async def _route(self, msg: Msg) -> None:
        batch = self._waiting.get(msg.subject.rsplit(".", 1)[1])
        if batch is not None:
            batch.add(msg)

    async def subject_history(
        self,
        subject: str,
        *,
        after_seq: int = 0,
        up_to_seq: int | None = None,
        up_to_time: str | None = None,
    ) -> list[RawMessage]:
        """Every message on ``subject`` with a sequence above ``after_seq``, in order.

        ``up_to_seq`` and ``up_to_time`` (RFC 3339) keep only the messages at or before them.
        The server ignores both on ``next_by_subj`` batches, so the cut is made here.
        """
        cut = Cut(up_to_seq, up_to_time)
        out: list[RawMessage] = []
        async with contextlib.aclosing(self.batches(subject, after_seq=after_seq)) as batches:
            async for batch in batches:
                for msg in batch:
                    if cut.past(msg):
                        return out
                    out.append(msg)
        return out

    async def batches(
        self, subject: str, *, after_seq: int = 0
    ) -> AsyncGenerator[list[RawMessage], None]:
        """The messages on ``subject`` with a sequence above ``after_seq``, in order, as each
        batch request returns them (none empty)."""
        start = after_seq + 1
        while True:
            request: dict[str, Any] = {"seq": start, "next_by_subj": subject, "batch": self._batch}
            batch: list[RawMessage] = []
            pending = await self._batch_request(request, batch)
            if batch:
                yield batch
            if pending == 0 or not batch:
                return
            start = batch[-1].seq + 1

    async def get(self, seq: int) -> RawMessage | None:
        """One message by stream sequence, or None when there is none."""
        out: list[RawMessage] = []
        await self._batch_request({"seq": seq, "batch": 1}, out)
        return out[0] if out and out[0].seq == seq else None

    async def at(self, subject: str, seq: int) -> RawMessage | None:
        """The message at stream sequence ``seq`` when it is on ``subject``, else None."""
        msg = await self.get(seq)
        return msg if msg is not None and msg.subject == subject else None

    async def last_for_subject(self, subject: str) -> RawMessage | None:
        """The newest message on ``subject`` (a literal subject), or None when there is none.

        Asked on the subject-suffixed form ``$JS.API.DIRECT.GET.<stream>.<subject>``, which a
        NATS permission can scope to some subjects. (nats-server 2.15 answers that form only
        for the last message: any request body there is a ``408``, so history reads cannot be
        scoped this way.)
        """
        out: list[RawMessage] = []
        await self._batch_request(None, out, subject=subject)
        return out[0] if out else None

    async def last_of_subjects(self, subjects: list[str]) -> list[RawMessage]:
        """The newest message of each of ``subjects`` (literal subjects) that has one, in
        stream order: one ``multi_last`` batch request per ``MULTI_LAST_LIMIT`` subjects."""
        out: list[RawMessage] = []
        for start in range(0, len(subjects), MULTI_LAST_LIMIT):
            chunk = subjects[start : start + MULTI_LAST_LIMIT]
            await self._batch_request({"multi_last": chunk, "batch": len(chunk)}, out)
        return out

    async def _batch_request(
        self, request: dict[str, Any] | None, out: list[RawMessage], *, subject: str = ""
    ) -> int:
        """Send one batch request, append its messages to ``out``; return what is pending.

        With ``subject`` and no request, ask for ``subject``'s last message on the suffixed form.
        """
        token = str(next(self._ids))
        batch = _Batch(out)
        self._waiting[token] = batch
        api = f"$JS.API.DIRECT.GET.{self._stream}"
        try:
            with nats_call(f"a direct get on stream {self._stream}"):
                await self._nc.publish(
                    f"{api}.{subject}" if subject else api,
                    codec.dumps(request) if request is not None else b"",
                    reply=f"{self._prefix}.{token}",
                )
            try:
                await asyncio.wait_for(batch.done, self._timeout)
            except TimeoutError:
                raise Timeout(f"direct get on stream {self._stream} timed out") from None
        finally:
            del self._waiting[token]
        if batch.error is not None and batch.error.startswith("503"):
            raise NoResponders(
                f"no stream {self._stream!r} answers direct gets", details={"stream": self._stream}
            )
        if batch.error is not None:
            raise Internal(f"direct get failed: {batch.error}")
        return batch.pending

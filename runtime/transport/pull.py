"""Fetching batches from a durable pull consumer: one request and one wake-up per batch.

nats-py's ``PullSubscription.fetch`` reads a batch one message at a time through
``Subscription.next_msg``, which starts a task, an ``asyncio.wait_for`` with its own timer and
draws a ``uuid4`` for every message: more CPU than a projection or a process manager spends
handling the message. A :class:`Puller` asks with one ``$JS.API.CONSUMER.MSG.NEXT`` request per
fetch, replied to on the request's own subject under one wildcard inbox subscription, and
gathers the deliveries in that subscription's callback, waking the fetch once: when the batch is
full, when the request ends (a 404, 408 or 409 status), or at the fetch's timeout.

The request has both ``no_wait`` and ``expires``: the server delivers what the consumer has now,
or else waits for the first messages and then ends the request, or ends it at ``expires`` with
nothing. So a fetch returns what is there at once, or the first messages to come (a replica
tailing the stream applies a new event at once, not at the end of its long poll), without a
second request.

Deliveries that arrive after the fetch that asked for them returned (the rest of a request cut
short by the fetch's timeout) stay queued, in delivery order, and are the first the next fetch
returns: every reply comes over one connection from one consumer, so they arrive in the order the
consumer delivers them, and with acknowledgements of "everything up to here" none may be skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ..errors import Internal, Unavailable
from ..wire import codec
from .nats_errors import STATUS_HEADER, nats_call

HEARTBEAT = "100"
ENDED = frozenset({"404", "408", "409"})  # nothing (more) now, request expired, see ended()
# The server ends a request about when the fetch gives up on it (after it, by the request's way
# to the server, under load: the deliveries it still brings are kept for the next fetch).
EXPIRES_MARGIN_NS = 100_000


class Puller:
    """Fetches batches from consumer ``consumer`` of ``stream`` (:meth:`start` first); one
    fetch at a time."""

    def __init__(self, nc: NATS, stream: str, consumer: str) -> None:
        self._nc = nc
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._what = f"consumer {consumer}"
        self._inbox = ""
        self._ids = itertools.count(1)
        self._sub: Any = None
        self._ready: deque[Msg] = deque()
        self._reply = ""  # the reply subject of the request being waited on
        self._want = 0
        self._end: Msg | None = None  # the status that ended that request
        self._waiter: asyncio.Future[None] | None = None

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        with nats_call(f"subscribing to {self._what}"):
            self._sub = await self._nc.subscribe(self._inbox + ".*", cb=self._on_msg)

    async def stop(self) -> None:
        """Stop receiving; deliveries still queued are dropped (never acknowledged, so the
        consumer gives them again to whoever reads it next)."""
        sub, self._sub = self._sub, None
        self._ready.clear()
        if sub is not None:
            with contextlib.suppress(Exception):  # a closed connection: nothing left to undo
                await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        status = (msg.headers or {}).get(STATUS_HEADER) if not msg.data else None
        if status is None:
            self._ready.append(msg)
            if len(self._ready) >= self._want:
                self._wake()
        elif status != HEARTBEAT and msg.subject == self._reply:
            self._end = msg
            self._wake()
        # else: a heartbeat, or the end of an earlier request: nothing more comes for it

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` deliveries: those already queued, else what the consumer has now,
        else the first to come within ``timeout`` seconds; none when nothing came in time.

        Raises :class:`~runtime.errors.Unavailable` when the server refused the request (the
        consumer is gone or was deleted)."""
        if self._sub is None:
            raise Internal(f"{self._what} is not subscribed")
        if batch < 1 or timeout <= 0:
            raise Internal("a fetch needs a positive batch and timeout")
        if not self._ready:
            expires = max(1, int(timeout * 1_000_000_000) - EXPIRES_MARGIN_NS)
            await self._request({"batch": batch, "expires": expires, "no_wait": True}, timeout)
        ready = self._ready
        if len(ready) <= batch:
            out = list(ready)
            ready.clear()
            return out
        return [ready.popleft() for _ in range(batch)]

    async def _request(self, request: dict[str, Any], timeout: float) -> None:
        """Send one pull request and wait until its batch is queued, it ended, or ``timeout``
        passed; raise the server's refusal, if it sent one instead of messages."""
        self._reply = f"{self._inbox}.{next(self._ids)}"
        self._want = request["batch"]
        self._end = None
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            with nats_call(f"a fetch from {self._what}"):
                await self._nc.publish(self._next, codec.dumps(request), reply=self._reply)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._waiter, timeout)
        finally:
            self._waiter, self._want, self._reply = None, 0, ""
        end = self._ended()
        if end is not None and not self._ready and refused(end):
            headers = end.headers or {}
            description = headers.get("Description", "")
            raise Unavailable(
                f"{self._what} refused a fetch: {headers.get(STATUS_HEADER)} {description}",
                details={"reason": "consumer_refused"},
            )

    def _ended(self) -> Msg | None:
        """The status that ended the request just waited on, if it came."""
        end, self._end = self._end, None
        return end


def refused(end: Msg) -> bool:
    """Whether a request's closing status says the consumer cannot be read, not just "nothing
    more for now": a status outside 404/408/409, or a 409 saying the consumer was deleted (other
    409s end one request: a leader change, too many waiting requests)."""
    headers = end.headers or {}
    status = headers.get(STATUS_HEADER, "")
    if status not in ENDED:
        return True
    return status == "409" and "deleted" in headers.get("Description", "").lower()

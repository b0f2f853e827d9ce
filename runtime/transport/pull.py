"""Fetching batches from a durable pull consumer, the deliveries collected by one callback.

nats-py's ``PullSubscription.fetch`` reads a batch one message at a time through
``Subscription.next_msg``, which starts a task, an ``asyncio.wait_for`` with its own timer
and draws a ``uuid4`` for every message: on a process manager's path that machinery cost
about a tenth of its time. Here the consumer's deliveries (and the server's status messages
that end a pull request) go to one subscription callback that appends them to a queue, and a
fetch waits once, until its batch is complete or its request ended. The requests are
JetStream's own (``$JS.API.CONSUMER.MSG.NEXT``), as nats-py sends them: first one that
answers at once with what is there (``no_wait``), and, when nothing was, one that waits up
to the fetch timeout for the first message.

Deliveries that arrive after the fetch that asked for them returned (the rest of a waiting
request, a request cut short) stay queued, in delivery order, and are the first the next
fetch returns: a delivery is never skipped while later ones of the same consumer are
acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ..errors import Unavailable
from ..wire import codec
from .nats_errors import STATUS_HEADER, nats_call

NO_MESSAGES = "404"
REQUEST_TIMEOUT = "408"
HEARTBEAT = "100"
ENDED = (NO_MESSAGES, REQUEST_TIMEOUT)


class Puller:
    """Fetches batches from consumer ``consumer`` of ``stream`` on ``nc``."""

    def __init__(self, nc: NATS, stream: str, consumer: str) -> None:
        self._nc = nc
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._what = f"consumer {consumer}"
        self._inbox = ""
        self._sub: Any = None
        self._ready: deque[Msg] = deque()
        self._want = 0  # what the waiting fetch needs to return at once
        self._waiter: asyncio.Future[None] | None = None
        self._refused = ""  # a status that ended the request with an error

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        with nats_call(f"subscribing to {self._what}"):
            self._sub = await self._nc.subscribe(self._inbox, cb=self._on_msg)

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
        elif status == HEARTBEAT:
            return
        else:
            if status not in ENDED:  # 409: the consumer deleted, a leader change, ...
                self._refused = f"{status} {(msg.headers or {}).get('Description', '')}"
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` deliveries: those already queued, else what the consumer has now,
        else the first to come within ``timeout`` seconds (with those that come with it).

        Raises :class:`Unavailable` when the server ended the request with an error status
        (e.g. the consumer was deleted); an empty list when nothing came in time."""
        if self._sub is None:
            raise Unavailable(f"{self._what} is not subscribed")
        if not self._ready:
            answered = await self._request({"batch": batch, "no_wait": True}, batch, timeout)
            if not answered:
                return []  # no answer at all in time (a leader change): the caller asks again
        if not self._ready:
            expires = max(1, int(timeout * 1_000_000_000) - 100_000)
            await self._request({"batch": batch, "expires": expires}, 1, timeout)
        ready = self._ready
        return [ready.popleft() for _ in range(min(batch, len(ready)))]

    async def _request(self, request: dict[str, Any], want: int, timeout: float) -> bool:
        """Send one pull request and wait until ``want`` deliveries are queued or the request
        ended (True), or ``timeout`` passed (False)."""
        loop = asyncio.get_running_loop()
        self._waiter, self._want, self._refused = loop.create_future(), want, ""
        try:
            with nats_call(f"a fetch from {self._what}"):
                await self._nc.publish(self._next, codec.dumps(request), reply=self._inbox)
            try:
                await asyncio.wait_for(self._waiter, timeout)
            except TimeoutError:
                return False
        finally:
            self._waiter, self._want = None, 0
        if self._refused and not self._ready:
            raise Unavailable(f"{self._what} refused a fetch: {self._refused}")
        return True

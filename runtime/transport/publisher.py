"""JetStream publishes whose acknowledgements return on one subscription of this connection.

``JetStreamContext.publish`` makes each publish a full NATS request: a fresh random inbox token,
an ``asyncio.wait_for`` with its own timer, and the ack parsed by the standard ``json`` module
into a dataclass. On the command path that machinery costs about as much as the worker's own
work for a command. Here each publish names ``<inbox>.<n>`` as its reply subject, where the inbox
is this publisher's one subscription and ``n`` counts up; the ack resolves the future waiting
under ``n``; one loop timer, armed for the oldest publish still waiting, fails those that waited
too long; and the ack is read with orjson. The I/O is exactly JetStream's: one message out, its
ack back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import nats.errors
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ..errors import JetStreamError, PermissionDenied, Timeout
from ..wire.headers import encode_headers
from .hpub import publish_encoded
from .nats_errors import (
    STATUS_HEADER,
    WRONG_LAST_SEQUENCE_CODES,
    nats_call,
    no_responders,
    refusal,
    translate,
)
from .refusals import watch_replies


@dataclass(frozen=True, slots=True)
class Ack:
    """JetStream's acknowledgement of a stored message."""

    seq: int
    duplicate: bool


class Refused(Exception):
    """Raised (internally) when JetStream refused the message; ``err_code`` says why."""

    def __init__(self, err_code: int, status: int, description: str) -> None:
        super().__init__(description)
        self.err_code = err_code
        self.status = status
        self.description = description

    @property
    def conflict(self) -> bool:
        """Whether it is the compare-and-set conflict (an expected last sequence not met)."""
        return self.err_code in WRONG_LAST_SEQUENCE_CODES

    def as_error(self, what: str) -> JetStreamError:
        return refusal(what, self.err_code, self.status, self.description)


class NoStream(Exception):
    """Raised (internally) when no stream took the message (none, or one without a leader)."""


class Publisher:
    """Publishes to JetStream on ``nc`` and waits for each ack, ``timeout`` seconds at most."""

    def __init__(self, nc: NATS, timeout: float) -> None:
        self.nc = nc
        self.timeout = timeout
        self._prefix = ""
        self._subscription: Subscription | None = None
        self._subscribing = anyio.Lock()
        self._counter = itertools.count(1)
        # Oldest first (dicts keep insertion order): the timer only ever looks at the front.
        self._waiting: dict[int, tuple[asyncio.Future[Msg], float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._unwatch: Callable[[], None] = lambda: None

    async def publish(self, subject: str, body: bytes, headers: bytes | Mapping[str, str]) -> Ack:
        """Publish and return JetStream's ack; ``headers`` as a dict or already encoded
        (:func:`runtime.wire.headers.encode_headers`).

        Raises :class:`Timeout` without an ack in time, :class:`Refused` when JetStream refused
        the message, :class:`NoStream` when no stream answered, :class:`PermissionDenied` when
        the server refused the user the subject, and the runtime error of any
        nats-py failure (its message names the subject, built only then: this is a hot path).
        """
        if self._subscription is None:
            await self._subscribe(subject)
        header_block = headers if isinstance(headers, bytes) else encode_headers(headers)
        n, future = self._register()
        try:
            try:
                await publish_encoded(
                    self.nc, subject, body, reply=f"{self._prefix}{n}", header_block=header_block
                )
            except nats.errors.Error as exc:
                raise translate(exc, f"the publish to {subject}") from None
            msg = await future
        finally:
            self._waiting.pop(n, None)
        return _ack(subject, msg)

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes, bytes | Mapping[str, str]]]
    ) -> list[Ack | Exception]:
        """Publish every one of ``messages`` (subject, body, headers) before waiting for any
        ack, then return each one's ack, or the error :meth:`publish` would have raised, in
        the order given. The messages leave in that order; their acks are awaited together."""
        if not messages:
            return []
        if self._subscription is None:
            await self._subscribe(messages[0][0])
        sent: list[tuple[int, str, asyncio.Future[Msg] | Exception]] = []
        results: list[Ack | Exception] = []
        try:
            for subject, body, headers in messages:
                header_block = headers if isinstance(headers, bytes) else encode_headers(headers)
                n, future = self._register()
                reply = f"{self._prefix}{n}"
                try:
                    await publish_encoded(
                        self.nc, subject, body, reply=reply, header_block=header_block
                    )
                except nats.errors.Error as exc:
                    sent.append((n, subject, translate(exc, f"the publish to {subject}")))
                    continue
                sent.append((n, subject, future))
            for _, subject, waiting in sent:
                if isinstance(waiting, Exception):
                    results.append(waiting)
                    continue
                try:
                    results.append(_ack(subject, await waiting))
                except Exception as exc:  # this message's failure, not the others'
                    results.append(exc)
        finally:
            for n, _, _ in sent:
                self._waiting.pop(n, None)
        return results

    def _register(self) -> tuple[int, asyncio.Future[Msg]]:
        """A fresh reply number and the future its ack resolves (failed past the timeout)."""
        n = next(self._counter)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        deadline = loop.time() + self.timeout
        self._waiting[n] = (future, deadline)
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)
        return n, future

    @property
    def waiting(self) -> int:
        """Publishes waiting for their ack."""
        return len(self._waiting)

    async def stop(self) -> None:
        """Stop listening for acks; publishes still waiting time out."""
        self._unwatch()
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(nats.errors.Error):  # the connection may already be closed
                await subscription.unsubscribe()

    async def _subscribe(self, subject: str) -> None:
        async with self._subscribing:
            if self._subscription is not None:
                return
            prefix = f"{self.nc.new_inbox()}."
            with nats_call(f"the publish to {subject}"):
                self._subscription = await self.nc.subscribe(f"{prefix}*", cb=self._on_ack)
            self._prefix = prefix
            self._unwatch = watch_replies(self.nc, prefix, self._refused)

    def _refused(self, reply: str, error: PermissionDenied) -> bool:
        """The server refused the publish answered on ``reply``: fail it now."""
        waiting = self._waiting.get(int(reply[len(self._prefix) :]))
        if waiting is None or waiting[0].done():
            return False
        waiting[0].set_exception(error)
        return True

    async def _on_ack(self, msg: Msg) -> None:
        try:
            n = int(msg.subject[len(self._prefix) :])
        except ValueError:
            return
        waiting = self._waiting.get(n)
        if waiting is not None and not waiting[0].done():
            waiting[0].set_result(msg)

    def _expire(self) -> None:
        """Fail the publishes waiting past their deadline; re-arm for the oldest left."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        waiting = self._waiting
        while waiting:
            n = next(iter(waiting))
            future, deadline = waiting[n]
            if deadline > now:
                self._timer = loop.call_at(deadline, self._expire)
                return
            del waiting[n]
            if not future.done():
                future.set_exception(Timeout("JetStream did not acknowledge in time"))


def _ack(subject: str, msg: Msg) -> Ack:
    """JetStream's answer to a publish to ``subject``: its ack, or the error it stands for."""
    if not msg.data:
        if no_responders(msg):
            raise NoStream(f"no stream answered the publish to {subject}")
        raise Refused(0, int((msg.headers or {}).get(STATUS_HEADER) or 0), "an empty ack")
    ack: dict[str, Any] = orjson.loads(msg.data)
    error = ack.get("error")
    if error is not None:
        raise Refused(
            int(error.get("err_code") or 0),
            int(error.get("code") or 0),
            str(error.get("description") or ""),
        )
    return Ack(int(ack["seq"]), bool(ack.get("duplicate")))

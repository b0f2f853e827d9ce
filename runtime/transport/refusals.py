"""A publish or subscription the server refuses fails what waits on it at once, not at a timeout.

nats-server answers a publish its user's permissions do not grant with nothing on the reply
subject: it sends the connection an ``-ERR 'Permissions Violation for Publish to "<subject>"'``,
which nats-py hands to the error callback (lower-cased) and otherwise ignores. A request whose
publish was refused would wait out its whole timeout and end as a ``Timeout`` that says nothing
of the cause. So the runtime's connections (:class:`Connection`) remember their recent publishes
that name a reply subject, and when such an error arrives, whatever waits on those replies fails
with :class:`~runtime.errors.PermissionDenied` naming the subject and the user:

- nats-py's own requests (``request``, and through it every JetStream, KV and Object Store call),
  which wait on its shared response inbox;
- the runtime's readers and publishers that wait on inboxes of their own
  (:func:`watch_replies`).

A refused *subscription* (``Permissions Violation for Subscription to "<subject>"``) fails the
requests whose replies it would have carried, now and later, and :func:`subscribed` lets
a service that subscribed learn it was refused, so it stops with a clear error instead of
serving nothing.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from nats.aio.client import Client as NATS

from ..errors import PermissionDenied
from ..wire.partitions import unpartitioned
from .nats_client import NatsClient

# nats-py lower-cases the server's -ERR text before handing it on.
VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"')
RECENT = 4096  # publishes with a reply remembered: far more than can wait for an -ERR at once
REFUSED_SUBSCRIPTIONS = 256  # refused subscriptions remembered

# Fails the waiter of a reply subject with the error, when one still waits there.
Fail = Callable[[str, PermissionDenied], object]


def matches(pattern: str, subject: str) -> bool:
    """Whether ``subject`` falls under the subscription ``pattern`` (``*`` and ``>`` wildcards)."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(have) == len(want)


class Connection(NatsClient):
    """The runtime's nats-py client: its refused publishes fail their waiters (see the module's
    text), and its read loop survives a cancelled flush (:mod:`.nats_client`)."""

    def __init__(self, user: str | None = None) -> None:
        super().__init__()
        self.user = user
        self._recent: deque[tuple[str, str]] = deque(maxlen=RECENT)  # (subject, reply)
        self._inboxes: dict[str, Fail] = {}  # reply prefix -> what fails its waiter
        # Lower-cased, as the server names them; a dict for its order, to forget the oldest.
        self._refused_subscriptions: dict[str, None] = {}

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        if reply:
            self.remember(subject, reply)
        await super().publish(subject, payload, reply, headers)

    def remember(self, subject: str, reply: str) -> None:
        """Note a publish with a reply, for a permissions violation to fail its waiter; every
        way of publishing a request on this connection calls it (see runtime/transport/hpub.py)."""
        self._recent.append((subject, reply))
        if self._refused_subscriptions:
            self._late(subject, reply)

    def watch(self, prefix: str, fail: Fail) -> Callable[[], None]:
        """Have ``fail`` called for a refused publish whose reply starts with ``prefix``;
        returns what stops it."""
        self._inboxes[prefix] = fail

        def stop() -> None:
            self._inboxes.pop(prefix, None)

        return stop

    def refused(self, exc: Exception) -> bool:
        """Fail the waiters of the publish or subscription ``exc`` (from the error callback)
        reports refused; False when it is no permissions violation or concerns no recent
        request of this connection (the server sends one error per refused publish: the first
        fails every request to the subject, the others find theirs already failed)."""
        match = VIOLATION.search(str(exc))
        if match is None:
            return False
        operation, subject = match.groups()
        if operation == "subscription":
            self._refused_subscriptions[subject] = None
            if len(self._refused_subscriptions) > REFUSED_SUBSCRIPTIONS:
                del self._refused_subscriptions[next(iter(self._refused_subscriptions))]
            found = [(s, r) for s, r in self._recent if matches(subject, r.lower())]
            self._fail(found, lambda s: self._denied("subscribe to", subject, s))
        else:
            # The server checks a publish after its subject mapping: a refused command names
            # the partitioned subject, not the one sent.
            sent = {subject, unpartitioned(subject) or subject}
            found = [(s, r) for s, r in self._recent if s.lower() in sent]
            self._fail(found, lambda s: self._denied("publish to", s))
        return bool(found)

    def check_subscribed(self, subjects: Iterable[str]) -> None:
        """Raise :class:`PermissionDenied` when the server refused a subscription to one of
        ``subjects``; after a flush, it has answered every subscription made before it."""
        for subject in subjects:
            if subject.lower() in self._refused_subscriptions:
                raise self._denied("subscribe to", subject)

    def _late(self, subject: str, reply: str) -> None:
        """A request whose reply inbox the server already refused: fail it once it waits."""
        lowered = reply.lower()
        pattern = next((p for p in self._refused_subscriptions if matches(p, lowered)), None)
        if pattern is not None:
            # Its waiter is registered before the publish, so failing it now is safe.
            refused = self._denied("subscribe to", pattern, subject)
            self._fail([(subject, reply)], lambda _: refused)

    def _denied(self, operation: str, subject: str, request: str | None = None) -> PermissionDenied:
        who = f"user {self.user!r}" if self.user else "this connection's user"
        message = f"the NATS server does not allow {who} to {operation} {subject!r}"
        details: dict[str, Any] = {"subject": subject, "operation": operation.split()[0]}
        if request is not None and request != subject:
            message += f", where the answer to {request!r} would come"
            details["request"] = request
        if self.user:
            details["user"] = self.user
        return PermissionDenied(message + " (a permissions violation)", details=details)

    def _fail(self, found: list[tuple[str, str]], error: Callable[[str], PermissionDenied]) -> None:
        """Fail the waiter of each (subject, reply) that still waits."""
        mux = self._resp_sub_prefix.decode() if self._resp_sub_prefix else None
        for subject, reply in found:
            if mux is not None and reply.startswith(mux):
                future = self._resp_map.get(reply[len(mux) :])
                if future is not None and not future.done():
                    future.set_exception(error(subject))
                continue
            for prefix, fail in list(self._inboxes.items()):
                if reply.startswith(prefix):
                    fail(reply, error(subject))
                    break


async def subscribed(nc: NATS, subjects: Iterable[str]) -> None:
    """Return once the server has every subscription ``nc`` made so far; raise
    :class:`PermissionDenied` when it refused one to ``subjects`` (a connection made elsewhere
    reports nothing)."""
    # nats-py writes a flush's PING ahead of the protocol lines it still buffers, so a SUB may
    # reach the server after the first PING: the second follows it, and its PONG follows the
    # server's answer to the SUB.
    await nc.flush()
    await nc.flush()
    if isinstance(nc, Connection):
        nc.check_subscribed(subjects)


def watch_replies(nc: NATS, prefix: str, fail: Fail) -> Callable[[], None]:
    """Have ``fail`` called when the server refuses a publish of ``nc`` whose reply starts
    with ``prefix`` (a connection made elsewhere reports nothing); returns what stops it."""
    if isinstance(nc, Connection):
        return nc.watch(prefix, fail)
    return lambda: None

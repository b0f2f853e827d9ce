"""Waiting for JetStream while a process starts.

Workers and projectors are often started while their cluster is still electing leaders: a fresh
deployment, a rolling restart, a node recovering its store. Until the meta leader and the
streams' leaders are elected, JetStream API calls time out or answer 503 ("JetStream system
temporarily unavailable"); a process that took the first such answer for a broken configuration
would crash-loop instead of starting a few seconds later. So the JetStream set-up calls a
process makes at start go through :func:`jetstream_call`. Inside a start-up window
(:func:`waiting_for_jetstream`) it retries the failures that mean "not available yet", with the
runtime's back-off policy (:mod:`runtime.backoff`), until the window's deadline, logging what it
waits for; then it raises the last failure, which the caller translates into its usual clear
error (:func:`runtime.transport.nats_errors.jetstream_setup`). Anything else (a stream with
other settings, a bad bucket name) fails at once, as does every call outside a window.

The window is a context variable rather than a parameter: the set-up calls sit in the stores and
consumers that own them, a few layers below the settings that hold the deadline, and the same
calls made later (a projector recovering its consumer, ``cqrs events``) must keep failing at once
as they always did.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import nats.errors
import nats.js.errors

from ..backoff import Backoff
from ..log import get_logger

log = get_logger("runtime.transport.startup")

T = TypeVar("T")

DEFAULT_STARTUP_TIMEOUT = 30.0  # seconds
# Jittered, so that the processes of one deployment, which all start at once, do not ask the
# recovering cluster in lockstep.
STARTUP_BACKOFF = Backoff(first=0.1, maximum=2.0, jitter=0.5)

# JetStream API error codes that mean "not yet" while a cluster forms: 10009, the server cannot
# handle the request (it has no leader to forward it to); 10005, no suitable peers for placing
# the replicas (servers are still joining). Every 503 is "not yet" too, 10008 above all.
TRANSIENT_ERR_CODES = frozenset({10005, 10009})


@dataclass(frozen=True)
class _Window:
    started: float  # time.monotonic()
    deadline: float
    backoff: Backoff


_window: ContextVar[_Window | None] = ContextVar("cqrs_startup_window", default=None)


@contextlib.contextmanager
def waiting_for_jetstream(timeout: float, backoff: Backoff | None = None) -> Iterator[None]:
    """Let the JetStream calls made in the block through :func:`jetstream_call` wait for
    JetStream, all together up to ``timeout`` seconds from now (the last attempt may overrun
    that by one API timeout)."""
    now = time.monotonic()
    token = _window.set(_Window(now, now + timeout, backoff or STARTUP_BACKOFF))
    try:
        yield
    finally:
        _window.reset(token)


def is_transient(exc: Exception) -> bool:
    """Whether ``exc`` means that JetStream is not available *yet*, rather than misconfigured.

    A server without JetStream at all also answers 503 (nats-py's translation of "no
    responders"): at start that cannot be told from a server still recovering its store, so it
    is waited for too, and reported as what it probably is once the deadline passes.
    """
    # nats-py's TimeoutError is also the built-in one (through asyncio's). A publish to a
    # stream without a leader yet (a bucket created a moment ago) finds no responders too.
    if isinstance(
        exc, TimeoutError | nats.errors.NoRespondersError | nats.js.errors.NoStreamResponseError
    ):
        return True
    if isinstance(exc, nats.js.errors.ServiceUnavailableError):  # without a code: no responders
        return True
    if isinstance(exc, nats.js.errors.APIError):
        # Some of nats-py's own subclasses (the KV ones) never set the codes.
        code, err_code = getattr(exc, "code", None), getattr(exc, "err_code", None)
        return code == 503 or err_code in TRANSIENT_ERR_CODES
    return False


async def jetstream_call(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """Make one JetStream API call, ``call()``, for ``what`` (e.g. "the event stream EVENTS").

    Outside a start-up window it is made once, as it is once the window's deadline has passed
    (a task started inside a window inherits it). Inside one, transient failures are retried
    until the window's deadline; the last one is raised (with the JetStream client's own
    exception type, for the caller to translate).
    """
    window = _window.get()
    if window is None or time.monotonic() >= window.deadline:
        return await call()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = window.backoff.delay(attempt)
            if time.monotonic() + delay >= window.deadline:
                log.error(
                    "jetstream_unavailable",
                    what=what,
                    attempts=attempt,
                    waited=round(time.monotonic() - window.started, 1),
                    error=str(exc) or repr(exc),
                )
                raise
            log.warning(
                "jetstream_waiting",
                what=what,
                attempt=attempt,
                error=str(exc) or repr(exc),
                retry_in=round(delay, 2),
            )
        await anyio.sleep(delay)


def raise_if_transient(error: Mapping[str, Any]) -> None:
    """Raise the ``error`` of a raw JetStream API reply as nats-py would, when it is transient,
    so that :func:`jetstream_call` waits it out like the answers of nats-py's own calls."""
    code = error.get("code")
    kind = nats.js.errors.ServiceUnavailableError if code == 503 else nats.js.errors.APIError
    exc = kind(code=code, err_code=error.get("err_code"), description=error.get("description"))
    if is_transient(exc):
        raise exc

"""nats-py's exceptions, translated into the runtime's error tree where a call into nats-py is made.

Callers of the runtime never see a nats-py exception: each call into nats-py runs inside
:func:`nats_call`, which turns what nats-py raises into the :class:`~runtime.errors.CqrsError`
that says what a caller can do about it (retry later, fix the input, look at JetStream's code).
A module that must tell a particular nats-py error apart (a missing key, a wrong last sequence)
catches that one first, and lets :func:`nats_call` translate the rest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from ..errors import (
    ConfigurationError,
    CqrsError,
    Internal,
    InvalidInput,
    JetStreamError,
    NoResponders,
    Timeout,
    Unavailable,
)

STATUS_HEADER = "Status"  # on a message the server sends in place of an answer
NO_RESPONDERS_STATUS = "503"
# JetStream refusing a publish whose expected last (subject) sequence is not the stream's: the
# compare-and-set conflict; newer servers may give it the second code.
WRONG_LAST_SEQUENCE = 10071
WRONG_LAST_SEQUENCE_CODES = frozenset({WRONG_LAST_SEQUENCE, 10164})

# Connection states in which nothing can be sent now, but may be later.
UNAVAILABLE: dict[type[nats.errors.Error], tuple[str, str]] = {
    nats.errors.ConnectionClosedError: ("closed", "the NATS connection is closed"),
    nats.errors.ConnectionDrainingError: ("draining", "the NATS connection is draining"),
    nats.errors.ConnectionReconnectingError: (
        "reconnecting",
        "the NATS connection is reconnecting",
    ),
    nats.errors.OutboundBufferLimitError: (
        "outbound_buffer_full",
        "the NATS connection is down and its outgoing buffer is full",
    ),
    nats.errors.NoServersError: ("no_servers", "no NATS server is reachable"),
    nats.errors.StaleConnectionError: ("stale", "the NATS connection went stale"),
    nats.js.errors.NoStreamResponseError: ("no_stream", "no JetStream stream answered"),
}


def translate(exc: nats.errors.Error, what: str) -> CqrsError:
    """The runtime error for ``exc``, raised while doing ``what`` (e.g. "sending a command")."""
    if isinstance(exc, nats.errors.NoRespondersError):
        return NoResponders(f"nothing answers {what}")
    if isinstance(exc, nats.errors.TimeoutError):
        return Timeout(f"no answer to {what} in time")
    if isinstance(exc, nats.errors.MaxPayloadError):
        return InvalidInput(
            f"{what} exceeds the server's max payload", details={"field": "$", "limit": "payload"}
        )
    for kind, (reason, message) in UNAVAILABLE.items():
        if isinstance(exc, kind):
            return Unavailable(f"{message} ({what})", details={"reason": reason})
    if isinstance(exc, nats.js.errors.APIError):
        return refusal(what, exc.err_code, exc.code, exc.description)
    return Internal(f"{what} failed: {type(exc).__name__}: {exc}")


def refusal(
    what: str, err_code: int | None, status: int | None, description: str | None
) -> JetStreamError:
    """The error for JetStream refusing ``what``, carrying JetStream's code and status."""
    return JetStreamError(
        f"JetStream refused {what}: {description or status}",
        details={"err_code": err_code, "status": status},
    )


def no_responders(msg: Msg) -> bool:
    """Whether ``msg`` is the server's status message saying nothing took a request."""
    return (msg.headers or {}).get(STATUS_HEADER) == NO_RESPONDERS_STATUS


class nats_call:  # lower case: it reads as the function it replaced, ``with nats_call(...)``
    """Run a call into nats-py; a nats-py exception leaves as its runtime error.

    A class rather than a ``contextlib.contextmanager`` generator: it wraps every reply and
    publish, and entering and leaving it costs 0.2 us instead of 1 us.
    """

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, nats.errors.Error):
            raise translate(exc, self.what) from None


@contextlib.contextmanager
def jetstream_setup(what: str) -> Iterator[None]:
    """Set up ``what`` (a stream, bucket or consumer): no answer means JetStream is off, a
    refusal means the deployment does not fit; both are a :class:`ConfigurationError`."""
    try:
        yield
    except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError):
        raise ConfigurationError(
            f"JetStream did not answer while setting up {what}: is JetStream enabled?"
        ) from None
    except nats.js.errors.APIError as exc:
        raise ConfigurationError(
            f"cannot set up {what}: {exc.description or exc.code}",
            details={"err_code": exc.err_code},
        ) from None
    except nats.errors.Error as exc:
        raise translate(exc, f"setting up {what}") from None

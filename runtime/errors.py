"""One error tree for everything the runtime raises.

Every failure a caller can see is a :class:`CqrsError` with a stable wire ``code`` (the same code
travels in command and query replies), so a remote client and an in-process caller handle errors
the same way. Errors of nats-py are translated into these at the boundary and never leak.
"""

from __future__ import annotations

from typing import Any, ClassVar

EXCERPT = 64  # characters of client input an error message may quote


def excerpt(value: object, limit: int = EXCERPT) -> str:
    """``repr(value)`` cut to ``limit`` characters: error messages never echo large input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class CqrsError(Exception):
    """Raised when anything in the runtime fails; the root of every error it raises."""

    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_wire(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` body this error travels as."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, details={self.details!r})"


class InvalidInput(CqrsError):
    """Raised when a command or query is malformed: bad JSON, wrong types, bad ids, too large."""

    code = "invalid"


class Rejected(CqrsError):
    """Raised when a command breaks a business rule of its aggregate; the message names it."""

    code = "rejected"

    def __init__(self, message: str, *, rule: str | None = None, **details: Any) -> None:
        if rule is not None:
            details["rule"] = rule
        super().__init__(message, details=details)


class UnknownCommand(CqrsError):
    """Raised when an aggregate type or command name is not defined."""

    code = "unknown_command"


class UnknownQuery(CqrsError):
    """Raised when a projection or query name is not defined."""

    code = "unknown_query"


class NotFound(CqrsError):
    """Raised when a query or lookup asks for something that does not exist."""

    code = "not_found"


class Conflict(CqrsError):
    """Raised when concurrent writers keep winning and the bounded retries run out."""

    code = "conflict"


class Busy(CqrsError):
    """Raised when an actor's mailbox is full: back-pressure, try again later."""

    code = "busy"


class Timeout(CqrsError):
    """Raised when NATS or JetStream does not answer in time (the outcome may be unknown)."""

    code = "timeout"


class Stale(CqrsError):
    """Raised when a read model has not reached the requested stream sequence in time."""

    code = "stale"


class Internal(CqrsError):
    """Raised when a handler or the runtime fails unexpectedly."""

    code = "internal"


class PermissionDenied(Internal):
    """Raised when the NATS server refuses a publish or subscription of the connection's user
    (its permissions do not grant the subject): the deployment does not fit, so it travels as
    ``internal``; ``details`` name the subject, the operation and the user."""


class NoResponders(CqrsError):
    """Raised when no worker serves the subject a command or query was sent to."""

    code = "no_responders"


class Unavailable(CqrsError):
    """Raised when the NATS connection is closed, draining or reconnecting: try again later."""

    code = "unavailable"


class StillFailing(CqrsError):
    """Raised when a parked process manager trigger fails again as it is retried (it stays
    parked)."""


class JetStreamError(CqrsError):
    """Raised when JetStream refuses a request; ``err_code`` is JetStream's own error code."""

    code = "jetstream"

    @property
    def err_code(self) -> int | None:
        """JetStream's error code (e.g. 10058 for a name in use), when it gave one."""
        value = self.details.get("err_code")
        return int(value) if value is not None else None


class ConfigurationError(CqrsError):
    """Raised when the runtime is set up inconsistently (e.g. a stream with the wrong settings)."""

    code = "configuration"


class SchemaError(CqrsError):
    """Raised when a stored event cannot be decoded by any known event type or upcaster."""

    code = "schema"


class ServerError(CqrsError):
    """Raised when the embedded nats-server cannot be found, started or reached."""

    code = "server"


class Unreachable(ServerError):
    """Raised when no NATS server of the configured URL answers within the connect timeout."""

    code = "unreachable"


class ConnectionClosed(ServerError):
    """Raised when an established NATS connection closes for good (reconnects exhausted, or the
    server closed it), so a long-running process exits and its supervisor restarts it."""

    code = "connection_closed"


class NoServer(ServerError):
    """Raised when a command needs a running server but none is configured or running."""

    code = "no_server"


class StoreInUse(ServerError):
    """Raised when another process runs the embedded server on the same state directory."""

    code = "store_in_use"


class ReplicaInUse(ConfigurationError):
    """Raised when a projection replica starts under an id another live replica holds."""

    code = "replica_in_use"


class Unauthorized(CqrsError):
    """Raised when credentials are refused: the NATS server refuses a connection's user,
    password or credentials file at connect, or the HTTP gateway requires a bearer token and
    the request has no valid one."""

    code = "unauthorized"


class Forbidden(CqrsError):
    """Raised when a valid token's scopes do not include the command or query it asks for."""

    code = "forbidden"


class MalformedRequest(CqrsError):
    """Raised when an HTTP request cannot be read at all: broken JSON, a bad header value."""

    code = "malformed"


class PayloadTooLarge(CqrsError):
    """Raised when an HTTP request body exceeds the gateway's size limit."""

    code = "too_large"


class UnsupportedMediaType(CqrsError):
    """Raised when an HTTP request body is not ``application/json``."""

    code = "unsupported_media_type"


_BY_CODE: dict[str, type[CqrsError]] = {
    cls.code: cls
    for cls in (
        InvalidInput,
        Rejected,
        UnknownCommand,
        UnknownQuery,
        NotFound,
        Conflict,
        Busy,
        Timeout,
        Stale,
        Internal,
        NoResponders,
        Unavailable,
        JetStreamError,
        ConfigurationError,
        SchemaError,
        ServerError,
    )
}


def error_from_wire(body: dict[str, Any]) -> CqrsError:
    """Rebuild the typed error a ``{"error": {...}}`` reply describes."""
    err = body.get("error") or {}
    code = str(err.get("code", "internal"))
    cls = _BY_CODE.get(code, Internal)
    message = str(err.get("message", ""))
    details = err.get("details") or {}
    if cls is Rejected:
        exc: CqrsError = Rejected(message, **details)
    else:
        exc = cls(message, details=details)
    return exc

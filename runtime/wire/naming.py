"""Names on the wire: aggregate ids, subjects and versioned event type names.

Aggregate names and ids are single NATS subject tokens. Checking them here, before anything is
sent, is what guarantees that a bad id never publishes anything anywhere.
"""

from __future__ import annotations

import importlib.metadata
import re
from typing import Literal

from ..errors import InvalidInput, excerpt

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
# Correlation and causation ids: any visible ASCII (trace ids, URNs, ...), bounded.
TOKEN_PATTERN = re.compile(r"[\x21-\x7e]{1,256}")
EVENT_TYPE_PATTERN = re.compile(
    r"(?P<name>[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)\.v(?P<version>[1-9][0-9]*)"
)

COMMAND_PREFIX = "cmd"
QUERY_PREFIX = "query"
EVENT_PREFIX = "events"

PROCESS_PREFIX = "cqrs.process"

# NATS micro services: one per aggregate type (its commands), one per projection (its queries)
# and one per process manager (its replicas' status); every replica of one joins the same queue
# group, so each request goes to one of them.
ServiceKind = Literal["aggregate", "projection", "process"]
_QUEUE_GROUP_PREFIX: dict[ServiceKind, str] = {
    "aggregate": "cqrs-",
    "projection": "cqrs-projection-",
    "process": "cqrs-process-",
}
try:
    SERVICE_VERSION = importlib.metadata.version("cqrs-runtime")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    SERVICE_VERSION = "0.0.0"


def check_id(value: object, *, field: str = "id") -> str:
    """Return ``value`` if it is a valid aggregate id, else raise :class:`InvalidInput`."""
    if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
        raise InvalidInput(
            f"{field} must match [A-Za-z0-9_-]{{1,128}}, got {excerpt(value)}",
            details={"field": field},
        )
    return value


def check_name(value: object, *, field: str) -> str:
    """Return ``value`` if it is a valid aggregate, projection, command or query name."""
    if not isinstance(value, str) or NAME_PATTERN.fullmatch(value) is None:
        raise InvalidInput(
            f"{field} must match [a-z][a-z0-9_]{{0,63}}, got {excerpt(value)}",
            details={"field": field},
        )
    return value


def check_token(value: object, *, field: str) -> str:
    """Return ``value`` if it is a valid correlation or causation id (visible ASCII, <= 256)."""
    if not isinstance(value, str) or TOKEN_PATTERN.fullmatch(value) is None:
        raise InvalidInput(
            f"{field} must be 1 to 256 visible ASCII characters, got {excerpt(value)}",
            details={"field": field},
        )
    return value


def split_event_type(type_name: str) -> tuple[str, int]:
    """Split ``order.created.v2`` into ``("order.created", 2)``."""
    match = EVENT_TYPE_PATTERN.fullmatch(type_name)
    if match is None:
        raise ValueError(
            f"event type {type_name!r} must be a dotted lower-case name ending in .v<N>, "
            "e.g. 'order.created.v1'"
        )
    return match["name"], int(match["version"])


def event_subject(aggregate: str, aggregate_id: str) -> str:
    return f"{EVENT_PREFIX}.{aggregate}.{aggregate_id}"


def command_subject(aggregate: str, aggregate_id: str, command: str) -> str:
    return f"{COMMAND_PREFIX}.{aggregate}.{aggregate_id}.{command}"


def query_subject(projection: str, query: str) -> str:
    return f"{QUERY_PREFIX}.{projection}.{query}"


def process_status_subject(manager: str) -> str:
    return f"{PROCESS_PREFIX}.{manager}.status"


def service_name(kind: ServiceKind, name: str) -> str:
    """The micro service serving aggregate or projection ``name`` (``$SRV.*.<service>``)."""
    return f"{kind}-{name}"


def queue_group(kind: ServiceKind, name: str) -> str:
    """The queue group the replicas serving aggregate or projection ``name`` share."""
    return _QUEUE_GROUP_PREFIX[kind] + name

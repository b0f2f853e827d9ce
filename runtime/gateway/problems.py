"""Errors as RFC 9457 ``application/problem+json``, with the runtime's ``code`` and ``details``.

An HTTP caller sees the same stable codes a NATS caller does; the status follows the code, so
generic HTTP clients, proxies and retry libraries do the right thing without knowing the codes
(``busy``, ``stale``, ``no_responders`` and ``unavailable`` say when to come back with
``Retry-After``).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from ..errors import CqrsError

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE = "urn:cqrs-runtime:problem:"
RETRY_AFTER_SECONDS = "1"

# code -> (status, title). Codes that only the gateway uses come last.
STATUS: dict[str, tuple[int, str]] = {
    "invalid": (422, "Invalid input"),
    "unknown_command": (404, "Unknown command"),
    "unknown_query": (404, "Unknown query"),
    "not_found": (404, "Not found"),
    "rejected": (409, "Rejected by a business rule"),
    "conflict": (409, "Conflict"),
    "busy": (429, "Busy, try again later"),
    "stale": (503, "Read model behind the requested sequence"),
    "no_responders": (503, "No worker serves this"),
    "unavailable": (503, "NATS unavailable"),
    "timeout": (504, "Timed out"),
    "internal": (500, "Internal error"),
    "malformed": (400, "Malformed request"),
    "unauthorized": (401, "Unauthorized"),
    "forbidden": (403, "Forbidden"),
    "not_a_route": (404, "No such route"),
    "method_not_allowed": (405, "Method not allowed"),
    "too_large": (413, "Request too large"),
    "unsupported_media_type": (415, "Unsupported media type"),
    "not_ready": (503, "Not ready"),
    # answered by the connection itself, before a request reaches the app (.protocol)
    "request_timeout": (408, "Request not received in time"),
    "uri_too_long": (414, "Request target too long"),
    "headers_too_large": (431, "Request header fields too large"),
    "overloaded": (503, "Too many connections"),
}
RETRY_LATER = frozenset(
    {"busy", "stale", "no_responders", "unavailable", "not_ready", "overloaded"}
)


def problem(
    code: str, detail: str, details: dict[str, Any] | None = None, *, instance: str | None = None
) -> Response:
    """The problem+json response for ``code``."""
    status, body = problem_body(code, detail, details, instance=instance)
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if code in RETRY_LATER else {}
    if code == "unauthorized":
        headers["WWW-Authenticate"] = "Bearer"
    return Response(body, status, headers=headers, media_type=PROBLEM_JSON)


def problem_body(
    code: str, detail: str, details: dict[str, Any] | None = None, *, instance: str | None = None
) -> tuple[int, bytes]:
    """The status and the problem+json document of ``code``."""
    status, title = STATUS.get(code, STATUS["internal"])
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "details": details or {},
    }
    if instance is not None:
        body["instance"] = instance
    return status, orjson.dumps(body)


def problem_for(exc: CqrsError, *, instance: str | None = None) -> Response:
    """The problem+json response for a runtime error (an unknown code is ``internal``)."""
    code = exc.code if exc.code in STATUS else "internal"
    return problem(code, exc.message, exc.details, instance=instance)

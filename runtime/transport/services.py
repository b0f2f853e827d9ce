"""NATS micro services: answering a request, and stopping a service without losing requests.

Replies carry a success body or a ``{"error": ...}`` body, with the error's code also in the micro
error headers (:func:`respond`).

``Service.stop()`` unsubscribes its endpoints. Requests that the server had already delivered to
this process, but whose handler had not run yet, are then thrown away: their clients wait for a
reply until they time out, and cannot tell whether the command ran. :func:`drain_service` first
*drains* each endpoint subscription: the server is told to stop delivering (UNSUB), a round trip
makes sure nothing is still on the wire, and the handler runs for every request already here.
Only then is the service stopped (which also ends its ``$SRV`` discovery subscriptions).

With several replicas in a queue group, requests sent after the UNSUB go to the other replicas;
with none left, the client gets "no responders" at once, which is safe to retry.

nats-py 2.16 has no public way to reach an endpoint's subscription, so this reads the service's
private ``_endpoints`` list; when that changes, it falls back to the plain ``stop()``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import structlog
from nats.micro.request import Request
from nats.micro.service import Service

from ..errors import CqrsError
from ..wire import codec

log = structlog.get_logger("runtime.transport.services")

MAX_ERROR_HEADER = 512


async def respond(request: Request, result: dict[str, Any] | CqrsError) -> None:
    """Answer a micro request with a success body or a ``{"error": ...}`` body."""
    if isinstance(result, CqrsError):
        await request.respond_error(
            result.code,
            result.message[:MAX_ERROR_HEADER].replace("\r", " ").replace("\n", " "),
            data=codec.dumps(result.to_wire()),
        )
    else:
        await request.respond(codec.dumps(result))


async def drain_service(service: Service) -> None:
    """Stop taking requests, let the delivered ones be handled, then stop ``service``."""
    endpoints: list[Any] = list(getattr(service, "_endpoints", []) or [])
    drained: list[Any] = []
    for endpoint in endpoints:
        subscription = getattr(endpoint, "_subscription", None)
        if subscription is None:
            continue
        try:
            await subscription.drain()
        except Exception as exc:  # a closed connection: nothing left to drain
            log.debug("endpoint_drain_failed", error=repr(exc))
        drained.append(endpoint)
    if drained and isinstance(getattr(service, "_endpoints", None), list):
        # Service.stop() would unsubscribe these again, which fails on a drained subscription.
        service._endpoints = [e for e in service._endpoints if e not in drained]
    with contextlib.suppress(Exception):
        await service.stop()

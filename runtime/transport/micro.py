"""A NATS micro service of our own: endpoints in a queue group, discovery, stats, and a drain.

It speaks the NATS micro protocol (ADR-32) as ``nats.micro`` does, so ``nats micro ls``,
``cqrs status`` and readiness probes see no difference: it answers ``$SRV.PING``, ``$SRV.INFO``
and ``$SRV.STATS`` (for all services, by service name, and by name and instance id) with the
public ``nats.micro`` response types. Owning it lets the runtime do what ``nats.micro`` does not:

- **Errors are counted when a reply carries one.** Handlers here answer with an error body
  rather than by raising (a command is answered later, by its actor), so a reply with an error
  counts in ``num_errors`` and sets ``last_error``, and the processing time runs from receipt
  to reply.
- **Replies go only to inboxes, and always fit.** A request whose reply subject is not an
  inbox (:mod:`.replies`) is refused before its handler runs: no reply, a ``reply_refused``
  warning, and it counts as an error (``refused`` on the endpoint). The same holds for the
  discovery subjects. A reply over the server's ``max_payload``, headers included, would make
  the server close the connection; it becomes a short ``invalid`` error with
  ``details.reason = "too_large"`` instead (:mod:`.limits`).
- **Stopping loses no request.** :meth:`MicroService.stop` first *drains* each endpoint
  subscription: the server is told to stop delivering (UNSUB), a round trip makes sure nothing
  is still on the wire, and the handler runs for every request already here. Only then do the
  discovery subscriptions go. With several replicas in a queue group, requests sent after the
  UNSUB go to the other replicas; with none left, the client gets "no responders" at once,
  which is safe to retry.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER
from nats.micro.service import (
    EndpointInfo,
    EndpointStats,
    ServiceInfo,
    ServicePing,
    ServiceStats,
)

from ..errors import CqrsError, Internal, excerpt
from ..log import get_logger
from ..wire import codec
from ..wire.naming import SERVICE_VERSION, ServiceKind, queue_group, service_name
from .limits import message_size, too_large
from .nats_errors import nats_call, translate
from .refusals import subscribed
from .replies import ReplyPolicy

log = get_logger("runtime.transport.micro")

DISCOVERY_PREFIX = "$SRV"
MAX_ERROR_HEADER = 512  # the error's message in the micro header; the body carries all of it

Handler = Callable[["Request"], Awaitable[None]]
# A synchronous handler for what can be answered from memory: (subject, headers, body) -> the
# encoded success body, an error, or None to leave the request to the (asynchronous) handler.
QuickHandler = Callable[[str, dict[str, str] | None, bytes], "bytes | CqrsError | None"]
StatsData = Callable[[EndpointStats], Any]


class Request:
    """One request to an endpoint, answered once with a success body or an error."""

    # Plain slots, not properties over the message: a handler reads them once per request.
    __slots__ = ("_answered", "_endpoint", "_received", "data", "headers", "reply", "subject")

    def __init__(self, msg: Msg, endpoint: Endpoint, received: int | None = None) -> None:
        self.subject: str = msg.subject
        self.headers: dict[str, str] | None = msg.headers
        self.data: bytes = msg.data
        self.reply: str = msg.reply
        self._endpoint = endpoint
        self._received = time.perf_counter_ns() if received is None else received
        self._answered = False

    async def respond(self, result: dict[str, Any] | bytes | CqrsError) -> None:
        """Answer with ``result``: a body (a dict or encoded JSON), or an error, whose code
        also goes into the micro error headers. A reply that cannot be sent is logged."""
        endpoint = self._endpoint
        if type(result) is bytes:  # an encoded success: no headers to measure
            data, headers = result, None
            size = len(data)
        else:
            data, headers = _encoded(result)
            size = message_size(data, headers)
        limit = endpoint.nc.max_payload
        if size > limit:
            log.warning("reply_too_large", subject=self.subject, size=size, max_payload=limit)
            result = too_large("the reply", size, limit)
            data, headers = _encoded(result)
        if not self._answered:
            self._answered = True
            elapsed = time.perf_counter_ns() - self._received
            if isinstance(result, CqrsError):
                endpoint.record(elapsed, f"{result.code}: {result.message}")
            else:  # Endpoint.record without an error, inline: this is every answered query
                endpoint.answered += 1
                endpoint.processing_time += elapsed
        reply = self.reply
        if not reply:
            return  # a publish, not a request: nobody waits for an answer
        try:
            await endpoint.nc.publish(reply, data, headers=headers)
        except nats.errors.Error as exc:
            reply_failed(self.subject, exc)


def reply_failed(subject: str, exc: nats.errors.Error) -> None:
    """Log a reply that could not be sent (translated here, not by ``nats_call``: no per-reply
    text)."""
    failure = translate(exc, f"the reply on {subject}")
    log.warning("reply_failed", subject=subject, code=failure.code, reason=failure.message)


def _encoded(result: dict[str, Any] | bytes | CqrsError) -> tuple[bytes, dict[str, str] | None]:
    """A reply's body, and for an error the micro error headers (code, message on one line)."""
    if isinstance(result, CqrsError):
        message = result.message[:MAX_ERROR_HEADER].replace("\r", " ").replace("\n", " ")
        return codec.dumps(result.to_wire()), {
            ERROR_HEADER: message,
            ERROR_CODE_HEADER: result.code,
        }
    return (result if isinstance(result, bytes) else codec.dumps(result)), None


def refused(service: str, msg: Msg) -> None:
    """Log a request refused for its reply subject (see :mod:`.replies`)."""
    log.warning(
        "reply_refused", service=service, subject=excerpt(msg.subject), reply=excerpt(msg.reply)
    )


@dataclass(eq=False, slots=True)
class Endpoint:
    """One subject a service serves, in the service's queue group, with its statistics."""

    nc: NATS
    name: str
    subject: str
    queue_group: str
    handler: Handler
    metadata: dict[str, str] = field(default_factory=dict)
    service: str = ""
    replies: ReplyPolicy = field(default_factory=ReplyPolicy)
    num_requests: int = 0
    num_errors: int = 0
    processing_time: int = 0  # nanoseconds, from receipt to reply
    answered: int = 0
    last_error: str | None = None
    refused: int = 0  # requests refused for their reply subject
    subscription: Subscription | None = None
    quick: QuickHandler | None = None  # tried before ``handler``, see on_message

    def record(self, elapsed_ns: int, error: str | None) -> None:
        """Count one answered request: its processing time, and its error if it has one."""
        self.answered += 1
        self.processing_time += elapsed_ns
        if error is not None:
            self.num_errors += 1
            self.last_error = error[:MAX_ERROR_HEADER]

    def accept(self, msg: Msg) -> Request | None:
        """Count ``msg`` and wrap it as a request; None (counted as refused) when its reply
        subject is not an inbox. For messages that reach the handler another way too."""
        self.num_requests += 1
        reply = msg.reply
        if reply and not reply.startswith(self.replies.prefixes):  # ReplyPolicy.allows, inline
            self.refused += 1
            self.record(0, "reply_refused: the reply subject is not an inbox")
            refused(self.service, msg)
            return None
        return Request(msg, self)

    async def on_message(self, msg: Msg) -> None:
        """Handle one request: refused for its reply subject, answered by ``quick`` when it can
        (with no :class:`Request`, no second coroutine and no reply to measure: a body that
        fits is published as it is), else by ``handler``."""
        reply = msg.reply
        if reply and not reply.startswith(self.replies.prefixes):
            self.accept(msg)  # refuses it
            return
        self.num_requests += 1
        request: Request | None = None
        received = time.perf_counter_ns()
        try:
            if self.quick is not None:
                answer = self.quick(msg.subject, msg.headers, msg.data)
                if type(answer) is bytes and reply and len(answer) <= self.nc.max_payload:
                    self.answered += 1
                    self.processing_time += time.perf_counter_ns() - received
                    try:
                        await self.nc.publish(reply, answer)
                    except nats.errors.Error as exc:
                        reply_failed(msg.subject, exc)
                    return
                if answer is not None:  # an error, a body too large, or nobody to send it to
                    await Request(msg, self, received).respond(answer)
                    return
            request = Request(msg, self, received)
            await self.handler(request)
        except Exception as exc:
            log.exception("request_crashed", endpoint=self.name, subject=msg.subject)
            request = request or Request(msg, self)
            await request.respond(Internal(f"{type(exc).__name__} while handling the request"))

    def info(self) -> EndpointInfo:
        return EndpointInfo(self.name, self.subject, self.queue_group, metadata=self.metadata)

    def stats(self) -> EndpointStats:
        return EndpointStats(
            name=self.name,
            subject=self.subject,
            queue_group=self.queue_group,
            num_requests=self.num_requests,
            num_errors=self.num_errors,
            processing_time=self.processing_time,
            average_processing_time=self.processing_time // max(self.answered, 1),
            last_error=self.last_error,
        )


class MicroService:
    """One instance of a NATS micro service: its endpoints and its discovery subjects."""

    def __init__(
        self,
        nc: NATS,
        *,
        name: str,
        version: str,
        queue_group: str,
        description: str = "",
        metadata: dict[str, str] | None = None,
        stats_data: StatsData | None = None,
        replies: ReplyPolicy | None = None,
    ) -> None:
        self.nc = nc
        self.replies = replies or ReplyPolicy.from_env()
        self.discovery_refused = 0  # discovery requests refused for their reply subject
        self.id = uuid.uuid4().hex
        self.name = name
        self.version = version
        self.queue_group = queue_group
        self.description = description
        self.metadata = dict(metadata or {})
        self.stats_data = stats_data
        self.started = datetime.now(UTC)
        self.endpoints: list[Endpoint] = []
        self._discovery: list[Subscription] = []

    def add_endpoint(
        self,
        name: str,
        subject: str,
        handler: Handler,
        metadata: dict[str, str] | None = None,
        quick: QuickHandler | None = None,
    ) -> None:
        """Serve ``subject`` with ``handler`` (``quick`` first, if given) once the service
        starts."""
        self.endpoints.append(
            Endpoint(
                self.nc,
                name,
                subject,
                self.queue_group,
                handler,
                dict(metadata or {}),
                service=self.name,
                replies=self.replies,
                quick=quick,
            )
        )

    async def start(self, *, endpoints: bool = True) -> None:
        """Subscribe the endpoints (unless told not to: see :meth:`open_endpoints`) and the
        discovery subjects; return once the server has them.

        Raises :class:`~runtime.errors.PermissionDenied` when the server refused the user an
        endpoint's subject."""
        self.started = datetime.now(UTC)
        with nats_call(f"starting service {self.name}"):
            if endpoints:
                await self._subscribe_endpoints()
            for verb, answer in (("PING", self.ping), ("INFO", self.info), ("STATS", self.stats)):
                for subject in self._discovery_subjects(verb):
                    self._discovery.append(
                        await self.nc.subscribe(subject, cb=self._discovery_handler(answer))
                    )
            # The server refuses a subscription with an asynchronous error only: without the
            # check, a user not granted a subject would leave the service serving nothing.
            await subscribed(self.nc, self._subscribed_subjects())

    def _subscribed_subjects(self) -> list[str]:
        return [e.subject for e in self.endpoints if e.subscription is not None]

    async def _subscribe_endpoints(self) -> None:
        for endpoint in self.endpoints:
            if endpoint.subscription is None:
                endpoint.subscription = await self.nc.subscribe(
                    endpoint.subject, queue=endpoint.queue_group, cb=endpoint.on_message
                )

    @property
    def taking_requests(self) -> bool:
        return any(e.subscription is not None for e in self.endpoints)

    async def open_endpoints(self) -> None:
        """Start taking requests (a service started without its endpoints, still discoverable
        meanwhile); return once the server has the subscriptions (raising
        :class:`~runtime.errors.PermissionDenied` as :meth:`start` does)."""
        with nats_call(f"opening the endpoints of service {self.name}"):
            await self._subscribe_endpoints()
            await subscribed(self.nc, self._subscribed_subjects())

    async def close_endpoints(self) -> None:
        """Stop taking requests and let every delivered one be handled, staying discoverable."""
        endpoints = [e.subscription for e in self.endpoints if e.subscription is not None]
        for endpoint in self.endpoints:
            endpoint.subscription = None
        for subscription in endpoints:
            try:
                await subscription.drain()  # type: ignore[no-untyped-call]
            except nats.errors.Error as exc:  # a closed or draining connection drains them itself
                log.debug("subscription_drain_failed", service=self.name, error=repr(exc))

    async def stop(self) -> None:
        """Stop taking requests, let every delivered one be handled, then leave discovery."""
        endpoints = [e.subscription for e in self.endpoints if e.subscription is not None]
        for endpoint in self.endpoints:
            endpoint.subscription = None
        for subscription in [*endpoints, *self._discovery]:
            try:
                await subscription.drain()  # type: ignore[no-untyped-call]
            except nats.errors.Error as exc:  # a closed or draining connection drains them itself
                log.debug("subscription_drain_failed", service=self.name, error=repr(exc))
        self._discovery = []

    def ping(self) -> ServicePing:
        return ServicePing(id=self.id, name=self.name, version=self.version, metadata=self.metadata)

    def info(self) -> ServiceInfo:
        return ServiceInfo(
            name=self.name,
            id=self.id,
            version=self.version,
            description=self.description,
            endpoints=[e.info() for e in self.endpoints],
            metadata=self.metadata,
        )

    def stats(self) -> ServiceStats:
        endpoints = [e.stats() for e in self.endpoints]
        if self.stats_data is not None:
            for endpoint in endpoints:
                endpoint.data = self.stats_data(endpoint)
        return ServiceStats(
            id=self.id,
            name=self.name,
            version=self.version,
            started=self.started,
            endpoints=endpoints,
            metadata=self.metadata,
        )

    def _discovery_subjects(self, verb: str) -> list[str]:
        base = f"{DISCOVERY_PREFIX}.{verb}"
        return [base, f"{base}.{self.name}", f"{base}.{self.name}.{self.id}"]

    def _discovery_handler(
        self, answer: Callable[[], ServicePing | ServiceInfo | ServiceStats]
    ) -> Callable[[Msg], Awaitable[None]]:
        async def handle(msg: Msg) -> None:
            if not msg.reply:
                return
            if not self.replies.allows(msg.reply):
                self.discovery_refused += 1
                refused(self.name, msg)
                return
            try:
                with nats_call(f"the discovery reply of service {self.name}"):
                    await self.nc.publish(msg.reply, codec.dumps(answer().to_dict()))
            except CqrsError as exc:
                log.warning("discovery_reply_failed", service=self.name, reason=exc.message)

        return handle


def definition_service(
    nc: NATS,
    kind: ServiceKind,
    name: str,
    *,
    serves: str,
    names: Sequence[str],
    subject: str,
    handler: Handler,
    metadata: dict[str, str] | None = None,
    stats_data: StatsData | None = None,
    quick: QuickHandler | None = None,
) -> MicroService:
    """The service of aggregate or projection ``name``: one endpoint ``serves`` ("commands" or
    "queries") whose ``names`` arrive on ``subject``, in the queue group its replicas share."""
    joined = ",".join(names)
    service = MicroService(
        nc,
        name=service_name(kind, name),
        version=SERVICE_VERSION,
        queue_group=queue_group(kind, name),
        description=f"{serves} of {kind} {name}: {', '.join(names)}",
        metadata={kind: name, serves: joined, **(metadata or {})},
        stats_data=stats_data,
    )
    service.add_endpoint(serves, subject, handler, {serves: joined}, quick)
    return service

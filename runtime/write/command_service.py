"""The command side's NATS interface: one ``nats.micro`` service per aggregate type.

Requests arrive on ``cmd.<aggregate>.<id>.<command>`` (the queue-group subject, where a server
without the partition mapping delivers them) or, through :mod:`runtime.write.partitioned`, on
the partitioned ``cmd.<partition>.<aggregate>.<id>.<command>`` this worker owns. Everything
that can be checked without the aggregate's state (the id, the JSON, the command name, the
argument types) is checked here, so bad input is answered at once and never reaches an actor,
let alone the stream.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from opentelemetry.trace import Span

from ..domain.aggregate import Aggregate
from ..errors import CqrsError
from ..log import get_logger
from ..observability import metrics
from ..observability.tracing import start_server_span, tracer, w3c_headers
from ..ownership.leases import Lease
from ..transport.micro import Endpoint, MicroService, Request, definition_service
from ..wire import codec
from ..wire.envelope import H_CAUSATION_ID, H_COMMAND_ID, H_CORRELATION_ID
from ..wire.naming import COMMAND_PREFIX, check_id, check_token
from .actor import CommandRequest
from .host import ActorHost, answered

log = get_logger("runtime.write.command_service")


def request_ids(headers: dict[str, str] | None) -> tuple[str, str, str | None]:
    """Command id, correlation id and causation id of a request (generated where absent)."""
    headers = headers or {}
    command_id = headers.get(H_COMMAND_ID) or uuid.uuid4().hex
    check_id(command_id, field=H_COMMAND_ID)
    correlation_id = headers.get(H_CORRELATION_ID)
    if correlation_id:
        check_token(correlation_id, field=H_CORRELATION_ID)
    else:
        correlation_id = command_id
    causation_id = headers.get(H_CAUSATION_ID) or None
    if causation_id is not None:
        check_token(causation_id, field=H_CAUSATION_ID)
    return command_id, correlation_id, causation_id


class CommandService:
    """Serves the commands of one aggregate type and hands them to the actor host."""

    def __init__(self, nc: NATS, host: ActorHost, aggregate: Aggregate[Any]) -> None:
        self.nc = nc
        self.host = host
        self.aggregate = aggregate
        self.service: MicroService | None = None
        self.partitions: Endpoint | None = None
        # Looked up once, like the metrics: install an SDK before building the worker.
        self.tracer = tracer()
        process_metrics = metrics.current()
        self.metrics = (
            process_metrics.aggregate(aggregate.name, aggregate.command_names)
            if process_metrics is not None
            else None
        )

    async def start(self, *, any_partition: bool = False) -> None:
        """Join the aggregate's queue group; ``any_partition`` also takes partitioned subjects
        (a worker told not to own partitions, on a server that partitions anyway)."""
        name = self.aggregate.name
        service = definition_service(
            self.nc,
            "aggregate",
            name,
            serves="commands",
            names=self.aggregate.command_names,
            subject=f"{COMMAND_PREFIX}.{name}.*.*",
            handler=self.handle,
        )
        if any_partition:
            service.add_endpoint("partitioned", f"{COMMAND_PREFIX}.*.{name}.*.*", self.handle)
        await service.start()
        self.service = service
        # Requests of the partitions this worker owns arrive through its own subscriptions
        # (runtime/write/partitioned.py); they count in the same endpoint's statistics.
        self.partitions = service.endpoints[0]

    async def stop(self) -> None:
        """Stop taking commands; every request already received still reaches the actor host."""
        service, self.service = self.service, None
        if service is not None:
            await service.stop()

    async def handle(
        self,
        request: Request,
        lease: Lease | None = None,
        done: Callable[[], None] | None = None,
    ) -> None:
        """Validate and enqueue; the actor answers later, so this returns at once.

        ``lease`` is the partition lease the request arrived under (None: the queue-group
        subject, fenced mode); ``done`` runs once the request is answered, whatever the answer.
        """
        refusal = self.receive(request, lease, done)
        if refusal is not None:
            await refusal

    def receive(
        self,
        request: Request,
        lease: Lease | None = None,
        done: Callable[[], None] | None = None,
    ) -> Awaitable[None] | None:
        """:meth:`handle` without a coroutine of its own: None once the command is queued for
        its actor (most commands), else the refusal's reply, for the caller to await."""
        started = time.perf_counter() if self.metrics is not None else 0.0
        t = self.tracer
        span = None
        if t is not None:
            span = start_server_span(
                t,
                f"command {self.aggregate.name}",
                request.headers,
                {"cqrs.aggregate": self.aggregate.name, "messaging.destination": request.subject},
            )
        try:
            command_request, aggregate_id = self.parse(request, done, started, span)
            command_request.lease = lease
            self.host.submit(self.aggregate.name, aggregate_id, command_request)
        except CqrsError as exc:
            return self.refuse(request, exc, done, started, span)
        return None

    async def refuse(
        self,
        request: Request,
        exc: CqrsError,
        done: Callable[[], None] | None,
        started: float,
        span: Span | None,
    ) -> None:
        log.info(
            "command_refused",
            aggregate=self.aggregate.name,
            subject=request.subject,
            code=exc.code,
            reason=exc.message,
        )
        await request.respond(exc)
        if self.metrics is not None or span is not None:
            answered(self.metrics, request.subject.rsplit(".", 1)[-1], exc, started, span)
        if done is not None:
            done()

    def receive_owned(
        self, msg: Msg, lease: Lease, done: Callable[[], None]
    ) -> Awaitable[None] | None:
        """A request of a partition this worker owns (see runtime/write/partitioned.py); as
        :meth:`receive`."""
        endpoint = self.partitions
        if endpoint is None:
            raise RuntimeError("CommandService.start() was not called")
        request = endpoint.accept(msg)
        if request is None:
            done()
            return None
        return self.receive(request, lease, done)

    def parse(
        self,
        request: Request,
        done: Callable[[], None] | None = None,
        started: float = 0.0,
        span: Span | None = None,
    ) -> tuple[CommandRequest, str]:
        # cmd.<aggregate>.<id>.<command>, or cmd.<partition>.<aggregate>.<id>.<command>
        aggregate_id, command = request.subject.rsplit(".", 2)[1:]
        check_id(aggregate_id)
        body = codec.loads_object(request.data)
        args = self.aggregate.parse_command(command, body)
        command_id, correlation_id, causation_id = request_ids(request.headers)
        if span is not None:
            attributes = {"cqrs.id": aggregate_id, "cqrs.command": command}
            span.set_attributes({**attributes, "cqrs.command_id": command_id})
        return (
            CommandRequest(
                command=command,
                args=args,
                command_id=command_id,
                correlation_id=correlation_id,
                causation_id=causation_id,
                reply=request.respond,
                done=done,
                span=span,
                trace_headers=w3c_headers(request.headers),
                received=started,
            ),
            aggregate_id,
        )

"""The command side's NATS interface: one ``nats.micro`` service per aggregate type.

Requests arrive on ``cmd.<aggregate>.<id>.<command>``. Everything that can be checked without the
aggregate's state (the id, the JSON, the command name, the argument types) is checked here, so bad
input is answered at once and never reaches an actor, let alone the stream.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from nats.aio.client import Client as NATS

from ..domain.aggregate import Aggregate
from ..errors import CqrsError
from ..transport.micro import MicroService, Request, definition_service
from ..wire import codec
from ..wire.envelope import H_CAUSATION_ID, H_COMMAND_ID, H_CORRELATION_ID
from ..wire.naming import COMMAND_PREFIX, check_id, check_token
from .actor import CommandRequest
from .host import ActorHost

log = structlog.get_logger("runtime.write.command_service")


def request_ids(headers: dict[str, str] | None) -> tuple[str, str, str | None]:
    """Command id, correlation id and causation id of a request (generated where absent)."""
    headers = headers or {}
    command_id = headers.get(H_COMMAND_ID) or uuid.uuid4().hex
    check_id(command_id, field=H_COMMAND_ID)
    correlation_id = headers.get(H_CORRELATION_ID) or command_id
    check_token(correlation_id, field=H_CORRELATION_ID)
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

    async def start(self) -> None:
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
        await service.start()
        self.service = service

    async def stop(self) -> None:
        """Stop taking commands; every request already received still reaches the actor host."""
        service, self.service = self.service, None
        if service is not None:
            await service.stop()

    async def handle(self, request: Request) -> None:
        """Validate and enqueue; the actor answers later, so this returns at once."""
        try:
            command_request, aggregate_id = self.parse(request)
            self.host.submit(self.aggregate.name, aggregate_id, command_request)
        except CqrsError as exc:
            log.info(
                "command_refused",
                aggregate=self.aggregate.name,
                subject=request.subject,
                code=exc.code,
                reason=exc.message,
            )
            await request.respond(exc)

    def parse(self, request: Request) -> tuple[CommandRequest, str]:
        _, _, aggregate_id, command = request.subject.split(".", 3)
        check_id(aggregate_id)
        body = codec.loads_object(request.data)
        args = self.aggregate.parse_command(command, body)
        command_id, correlation_id, causation_id = request_ids(request.headers)

        return (
            CommandRequest(
                command=command,
                args=args,
                command_id=command_id,
                correlation_id=correlation_id,
                causation_id=causation_id,
                reply=request.respond,
            ),
            aggregate_id,
        )

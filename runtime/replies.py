"""Sending replies: success bodies, and errors with the same code in the micro error headers."""

from __future__ import annotations

from typing import Any

from nats.micro.request import Request

from . import codec
from .errors import CqrsError

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

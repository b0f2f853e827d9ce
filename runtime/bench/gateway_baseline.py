"""The benchmark's hand-written baseline for the gateway: the smallest ASGI app that forwards the
same HTTP requests to the same NATS responders with raw nats-py.

It does what any correct forwarder must (split the path, read the body, pass the idempotency
key, send the request, return the reply with its sequence) and nothing else: no validation, no
problem documents, no tokens, no deadlines or limits on its connections.
``python -m runtime.bench.gateway_baseline`` and the gateway side both serve through
:func:`runtime.gateway.server.serve_asgi`, this one as plain uvicorn with httptools.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl

import orjson
from nats.aio.client import Client as NATS

Scope = dict[str, Any]


def baseline_app(nc: NATS) -> Any:
    """An ASGI app serving ``POST /commands/...`` and ``GET /queries/...`` over ``nc``."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        parts = scope["path"].split("/")
        headers = dict(scope["headers"])
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if parts[1] == "commands":
            key = headers.get(b"idempotency-key", b"").decode() or uuid.uuid4().hex
            subject = f"cmd.{parts[2]}.{parts[3]}.{parts[4]}"
            request = {"Cqrs-Command-Id": key}
        else:
            subject = f"query.{parts[2]}.{parts[3]}"
            body = orjson.dumps(dict(parse_qsl(scope["query_string"].decode())))
            request = {}
        reply = await nc.request(subject, body or b"{}", timeout=30, headers=request)
        answer = orjson.loads(reply.data)
        status = 500 if "error" in answer else 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"cqrs-seq", str(answer.get("seq", 0)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": reply.data})

    return app


async def _main(url: str, port: int) -> None:
    import nats

    from ..gateway.server import serve_asgi
    from ..ops.shutdown import graceful_shutdown

    nc = await nats.connect(url)
    try:
        async with (
            graceful_shutdown(5) as shutdown,
            serve_asgi(baseline_app(nc), "127.0.0.1", port),
        ):
            await shutdown.wait()
    finally:
        await nc.close()


if __name__ == "__main__":
    import sys

    import anyio

    anyio.run(_main, sys.argv[1], int(sys.argv[2]))

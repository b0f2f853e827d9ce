"""The runtime's NATS connection keeps reading after a flush is cancelled."""

from __future__ import annotations

import anyio
from nats.aio.msg import Msg

from runtime.transport.connection import ConnectOptions, close, open_connection
from runtime.transport.embedded import EmbeddedServer


async def test_a_cancelled_flush_leaves_the_connection_reading(
    nats_server: EmbeddedServer,
) -> None:
    """Flushes cancelled while their PING is out (a cancelled task, a deadline) do not stop the
    connection: a later request is answered (nats-py alone stops its read loop at their PONG,
    so every later reply is lost)."""
    await nats_server.wait_ready()
    nc = await open_connection(nats_server.url, ConnectOptions())
    try:

        async def echo(msg: Msg) -> None:
            await msg.respond(msg.data)

        await nc.subscribe("echo", cb=echo)
        for _ in range(3):
            with anyio.move_on_after(0):
                await nc.flush()
        reply = await nc.request("echo", b"still reading", timeout=10)
        assert reply.data == b"still reading"
    finally:
        await close(nc, 5)

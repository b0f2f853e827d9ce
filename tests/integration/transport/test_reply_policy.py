"""The micro service answers only inbox reply subjects, its discovery requests included."""

from __future__ import annotations

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from runtime.transport.micro import MicroService, Request
from runtime.wire import codec

from ..procs import wait_until


async def test_requests_with_a_reply_subject_outside_the_inboxes_are_refused(nc: NATS) -> None:
    """A request or a discovery ping whose reply subject is not an inbox is neither handled nor
    answered; it counts as an error of the endpoint, and inbox requests are served as before."""
    handled: list[str] = []
    leaked: list[Msg] = []

    async def echo(request: Request) -> None:
        handled.append(request.subject)
        await request.respond({"echo": codec.loads(request.data)})

    async def leak(msg: Msg) -> None:
        leaked.append(msg)

    await nc.subscribe("events.>", cb=leak)
    service = MicroService(nc, name="echo", version="1.0.0", queue_group="echoes")
    service.add_endpoint("echo", "echo.*", echo)
    await service.start()
    try:
        await nc.publish("echo.a", b"1", reply="events.user.victim")
        await nc.publish("$SRV.PING.echo", b"", reply="events.user.pinged")
        reply = await nc.request("echo.b", b"2", timeout=5)
        assert codec.loads(reply.data) == {"echo": 2}
        endpoint = service.endpoints[0]
        await wait_until(lambda: service.discovery_refused == 1, 5, "the refused ping")
        assert (endpoint.refused, endpoint.num_errors, handled) == (1, 1, ["echo.b"])
        assert endpoint.stats().last_error is not None
        assert "reply_refused" in endpoint.stats().last_error
        await nc.flush()
        assert leaked == []
    finally:
        await service.stop()

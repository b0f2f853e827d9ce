"""Reply subjects are client input: on the generated accounts, pointing one at the event stream or
the snapshot bucket stores nothing and harms no aggregate or projection."""

from __future__ import annotations

from typing import Any

import nats.errors
import nats.js.errors
from structlog.testing import capture_logs

from aggregates import AGGREGATES
from projections import PROJECTIONS
from runtime import Client, ProjectorSettings, run_worker
from runtime.read.replicas import run_projections
from runtime.transport.connection import open_connection

from ..procs import NatsNode, wait_until
from .accounts import SCOPED, options, session

USER = {"name": "Vic", "email": "vic@example.com", "role": "customer"}
ORDER = {"user_id": "vic", "lines": [{"sku": "a", "quantity": 1, "unit_price": "2.50"}]}


def refused(logs: list[dict[str, Any]], reply: str) -> bool:
    return any(e["event"] == "reply_refused" and reply in e["reply"] for e in logs)


async def stored(node: NatsNode, replies: list[str]) -> tuple[int, list[str]]:
    """Messages in the event stream, and which of ``replies`` hold a message in any stream."""
    async with session(node, "admin") as admin:
        js = admin.nc.jetstream()
        found = []
        for subject in replies:
            stream = "OBJ_cqrs-projections" if subject.startswith("$O.") else "EVENTS"
            try:
                await js.get_last_msg(stream, subject)
                found.append(subject)
            except nats.js.errors.NotFoundError:
                pass
        return (await js.stream_info("EVENTS")).state.messages, found


async def test_replies_pointed_at_streams_store_nothing_and_harm_nobody(node: NatsNode) -> None:
    """A command replying into ``events.user.<victim>`` and queries replying into
    ``events.order.<x>`` and ``$O.cqrs-projections.>`` are refused: nothing is stored, the victim
    still answers, the projections keep applying, and a projector restart works."""
    worker_nc = await open_connection(node.url, options("worker"))
    projector_nc = await open_connection(node.url, options("projector"))
    client_nc = await open_connection(node.url, options("alice"))
    settings = ProjectorSettings(replica="r1")
    hostile = {
        "cmd.user.mallory.create": "events.user.vic",
        "query.orders.get_order_by_id": "events.order.ord-x",
        "query.users.get_user_by_id": "$O.cqrs-projections.C.x",
    }
    try:
        async with run_worker(worker_nc, AGGREGATES, SCOPED):
            client = Client(client_nc, timeout=5)
            async with run_projections(projector_nc, PROJECTIONS, settings):
                created = await client.send("user", "vic", "create", USER)
                await client.query("users", "get_user_by_id", {"user_id": "vic"}, min_seq=created)
                before = await stored(node, list(hostile.values()))
                assert before[1] == ["events.user.vic"]  # the victim's own commit
                with capture_logs() as logs:
                    for subject, reply in hostile.items():
                        body = b'{"user_id": "vic", "order_id": "ord-x"}'
                        if subject.startswith("cmd."):
                            body = b'{"name": "M", "email": "m@example.com"}'
                        await client_nc.publish(subject, body, reply=reply)
                    await client_nc.flush()
                    for reply in hostile.values():
                        await wait_until(lambda r=reply: refused(logs, r), 10, f"refusing {reply}")
                assert await stored(node, list(hostile.values())) == before
                changed = await client.send("user", "vic", "change_email", {"email": "v@x.org"})
                placed = await client.send("order", "ord-1", "create", ORDER)
                seen = await client.query(
                    "users", "get_user_by_id", {"user_id": "vic"}, min_seq=changed
                )
                assert seen.result["email"] == "v@x.org"
                assert placed.version == 1
            # A restart restores the snapshot the bucket holds and goes on.
            async with run_projections(projector_nc, PROJECTIONS, settings):
                again = await client.query(
                    "orders", "get_order_by_id", {"order_id": "ord-1"}, min_seq=placed
                )
                assert again.result["user_id"] == "vic"
    finally:
        for nc in (client_nc, projector_nc, worker_nc):
            await nc.close()
    assert "mallory" not in node.log_tail(100_000)


async def test_the_server_refuses_responder_replies_outside_inboxes(node: NatsNode) -> None:
    """Even a responder that did answer a hostile reply subject is stopped by its permissions:
    a projector may publish replies to users' inboxes, not into ``events.>``."""
    async with session(node, "projector") as projector, session(node, "alice") as alice:

        async def answer(msg: Any) -> None:
            await msg.respond(b'{"result": null, "seq": 0}')

        await projector.nc.subscribe("query.orders.*", queue="cqrs-projection-orders", cb=answer)
        await projector.nc.flush()

        async def answered() -> bool:
            try:
                reply = await alice.nc.request("query.orders.get_order_by_id", b"{}", timeout=5)
            except nats.errors.NoRespondersError:  # seen once on a loaded machine
                return False
            return reply.data.startswith(b'{"result"')

        await wait_until(answered, 10, "the responder to answer alice")
        await alice.nc.publish("query.orders.get_order_by_id", b"{}", reply="events.order.o-1")
        await alice.nc.flush()
        await projector.denied('publish to "events.order.o-1"')

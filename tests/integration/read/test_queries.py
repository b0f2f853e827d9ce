"""Queries against projection replicas on a real nats-server: read-your-writes, stale answers,
two replicas sharing the load, discovery, and bad input."""

from __future__ import annotations

import anyio
import orjson
import pytest
from nats.aio.client import Client as NATS

from aggregates import AGGREGATES
from projections import orders, users
from runtime import (
    Client,
    EventStore,
    NoResponders,
    ProjectorSettings,
    QueryResult,
    Stale,
    run_replica,
)
from runtime.domain.app import App
from runtime.ops.run import run_app
from runtime.testing import ProjectionSpec

from ..projection_support import append_orders, order_created, read_commits
from ..support import discovery_replies

SETTINGS = ProjectorSettings(
    replica="r1", snapshot_every=None, snapshot_interval=None, stale_timeout=0.5
)


async def test_a_query_with_a_minimum_sequence_waits_for_it(nc: NATS, store: EventStore) -> None:
    """A query asking for a sequence not yet in the stream is answered once it is applied."""
    last = await append_orders(store, 5)
    async with run_replica(nc, orders, SETTINGS) as replica:
        assert await replica.wait_for(last, timeout=10)
        answers: list[QueryResult] = []

        async def ask() -> None:
            answers.append(
                await Client(nc).query(
                    "orders", "get_order_by_id", {"order_id": "new"}, min_seq=last + 1
                )
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            seq, _ = await store.append(order_created("new", "u-1"), 0)
        assert seq == last + 1
        [answer] = answers
        assert answer.result["order_id"] == "new" and answer.seq >= seq


async def test_a_minimum_sequence_beyond_reach_answers_stale(nc: NATS, store: EventStore) -> None:
    """A sequence the stream never reaches in time gets `stale`, naming where the model is."""
    last = await append_orders(store, 3)
    async with run_replica(nc, orders, SETTINGS) as replica:
        assert await replica.wait_for(last, timeout=10)
        with pytest.raises(Stale) as stale:
            await Client(nc).query(
                "orders", "get_order_by_id", {"order_id": "o-1"}, min_seq=last + 1000
            )
        assert stale.value.details["seq"] == last
        assert stale.value.details["min_seq"] == last + 1000


async def test_read_your_writes_through_the_client_after_a_command(nc: NATS) -> None:
    """Passing a command's result makes the next query see it, also in a projection that does
    not follow the command's aggregate."""
    app = App(aggregates=AGGREGATES, projections=(orders, users))
    async with run_app(nc, app, projector_settings=SETTINGS):
        client = Client(nc)
        created = await client.send(
            "user", "u-1", "create", {"name": "Ada", "email": "ada@example.com"}
        )
        found = await client.query(
            "users", "find_user_by_email", {"email": "ada@example.com"}, min_seq=created
        )
        assert found.result["user_id"] == "u-1"
        placed = await client.send(
            "order",
            "ord-1",
            "create",
            {"user_id": "u-1", "lines": [{"sku": "a", "quantity": 3, "unit_price": "1.10"}]},
        )
        mine = await client.query(
            "orders", "get_orders_for_user", {"user_id": "u-1"}, min_seq=placed
        )
        assert [o["total"] for o in mine.result["orders"]] == ["3.30"]
        # users follows no order events: its model still reflects the order's sequence.
        again = await client.query("users", "get_user_by_id", {"user_id": "u-1"}, min_seq=placed)
        assert again.seq >= placed.seq


async def test_two_replicas_converge_and_share_the_queries(nc: NATS, store: EventStore) -> None:
    """Each replica applies every event; queries are spread over both through the queue group."""
    last = await append_orders(store, 150)
    async with (
        run_replica(nc, orders, SETTINGS) as one,
        run_replica(nc, orders, ProjectorSettings(replica="r2", snapshot_interval=None)) as two,
    ):
        assert await one.wait_for(last, timeout=10) and await two.wait_for(last, timeout=10)
        folded = ProjectionSpec(orders).given_commits(await read_commits(nc)).model
        assert one.model == folded and two.model == folded
        client = Client(nc)
        for i in range(60):
            await client.query("orders", "get_order_by_id", {"order_id": f"o-{i}"})
        stats = await discovery_replies(nc, "$SRV.STATS.projection-orders", 2)
        served = sorted(s["endpoints"][0]["num_requests"] for s in stats)
        assert len(served) == 2 and min(served) > 0 and sum(served) == 60
        replicas = {s["endpoints"][0]["data"]["replica"] for s in stats}
        assert replicas == {"r1", "r2"}


async def test_queries_are_discoverable(nc: NATS, store: EventStore) -> None:
    """$SRV.INFO lists the projection's query subject and queries, like the commands."""
    async with run_replica(nc, orders, SETTINGS):
        [info] = await discovery_replies(nc, "$SRV.INFO.projection-orders", 1)
        assert info["endpoints"][0]["subject"] == "query.orders.*"
        assert info["metadata"]["queries"] == "get_order_by_id,get_orders_for_user"


async def raw(
    nc: NATS, subject: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[str, dict]:  # type: ignore[type-arg]
    """The error code (micro header) and body of a reply to a raw request."""
    msg = await nc.request(subject, body, timeout=5, headers=headers)
    code = (msg.headers or {}).get("Nats-Service-Error-Code", "")
    return code, orjson.loads(msg.data)


@pytest.mark.parametrize(
    ("subject", "body", "headers", "code", "field"),
    [
        ("query.orders.get_order_by_id", b"{not json", None, "invalid", None),
        ("query.orders.get_order_by_id", b"[1, 2]", None, "invalid", "$"),
        ("query.orders.get_everything", b"{}", None, "unknown_query", None),
        ("query.orders.get_order_by_id", b'{"order_id": 42}', None, "invalid", "order_id"),
        ("query.orders.get_order_by_id", b"{}", None, "invalid", "order_id"),
        (
            "query.orders.get_orders_for_user",
            b'{"user_id": "u", "limit": "x"}',
            None,
            "invalid",
            "limit",
        ),
        (
            "query.orders.get_order_by_id",
            b'{"order_id": "o-1"}',
            {"Cqrs-Min-Seq": "soon"},
            "invalid",
            "Cqrs-Min-Seq",
        ),
        ("query.orders.get_order_by_id", b'{"order_id": "nope"}', None, "not_found", None),
    ],
)
async def test_bad_queries_get_their_error_code(
    nc: NATS,
    store: EventStore,
    subject: str,
    body: bytes,
    headers: dict[str, str] | None,
    code: str,
    field: str | None,
) -> None:
    """Malformed JSON, unknown queries, wrong argument types and missing rows get their code,
    in the micro error header and in the body."""
    await append_orders(store, 2)
    async with run_replica(nc, orders, SETTINGS):
        got, reply = await raw(nc, subject, body, headers)
        assert got == code and reply["error"]["code"] == code
        if field is not None:
            assert reply["error"]["details"]["field"] == field


async def test_an_unknown_projection_has_no_responders(nc: NATS) -> None:
    """A query to a projection nobody serves fails at once with no_responders."""
    async with run_replica(nc, orders, SETTINGS):
        with pytest.raises(NoResponders):
            await Client(nc).query("nothing", "get_order_by_id", {"order_id": "o-1"})

"""Hostile input over the wire: huge fields, huge commits, huge replies and values out of range
get a short ``invalid`` answer, store nothing and leave the connection serving."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from aggregates import AGGREGATES
from aggregates.order import order
from projections import orders
from runtime import (
    Client,
    EventMeta,
    InvalidInput,
    Projection,
    ProjectorSettings,
    run_replica,
    run_worker,
)
from runtime.wire import codec

from ..support import message_count

ORDER = {"user_id": "u-1", "lines": [{"sku": "a", "quantity": 1, "unit_price": "2.50"}]}
SETTINGS = ProjectorSettings(
    replica="r1", snapshot_every=None, snapshot_interval=None, stale_timeout=0.5
)
SHORT = 2_000  # bytes: what an error reply may take, whatever the input


async def ask(nc: NATS, subject: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
    reply = await nc.request(subject, body, timeout=5, headers=headers)
    assert len(reply.data) < SHORT, f"a {len(reply.data)}-byte reply"
    return codec.loads(reply.data)


async def still_serves(nc: NATS, aggregate_id: str) -> None:
    """The same connection goes on serving commands: the process is no zombie."""
    assert nc.is_connected
    result = await Client(nc).send("order", aggregate_id, "create", ORDER)
    assert result.version == 1


async def test_a_megabyte_field_is_a_short_invalid_error(nc: NATS) -> None:
    """A role of nearly 1 MB is invalid; the error does not echo it and the worker serves on."""
    async with run_worker(nc, AGGREGATES):
        role = "x" * (nc.max_payload - 500)
        body = codec.dumps({"name": "M", "email": "m@example.com", "role": role})
        error = (await ask(nc, "cmd.user.u-1.create", body))["error"]
        assert (error["code"], error["details"]["field"]) == ("invalid", "role")
        await still_serves(nc, "o-after-field")
    assert await message_count(nc) == 1


@pytest.mark.parametrize("margin", [700, -300])
async def test_a_commit_near_the_max_payload(nc: NATS, margin: int) -> None:
    """A commit just under the max payload is stored and answered; one just over it is invalid
    (``too_large``), stores nothing, and the worker serves on."""
    async with run_worker(nc, AGGREGATES):
        await Client(nc).send("order", "o-1", "create", ORDER)
        reason = "r" * (nc.max_payload - 400 - margin)
        reply = await nc.request("cmd.order.o-1.cancel", codec.dumps({"reason": reason}), timeout=5)
        body = codec.loads(reply.data)
        if margin > 0:
            assert body["version"] == 2
            assert await message_count(nc) == 2
        else:
            assert len(reply.data) < SHORT
            assert body["error"]["details"]["reason"] == "too_large"
            assert await message_count(nc) == 1
        await still_serves(nc, "o-after-commit")


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        ([{"sku": "a", "quantity": 1, "unit_price": "1", "colour": "red"}], "lines[0].colour"),
        ([{"sku": "a", "quantity": 1, "unit_price": "9E+999999"}], "lines[0].unit_price"),
        ([{"sku": "a", "quantity": 1, "unit_price": 1e30}], "lines[0].unit_price"),
        ([{"sku": "a", "quantity": 1, "unit_price": "NaN"}], "lines[0].unit_price"),
        ([{"sku": "a", "quantity": 1, "unit_price": "-Infinity"}], "lines[0].unit_price"),
        ([{"sku": "a", "quantity": 2**63, "unit_price": "1"}], "lines[0].quantity"),
        ([{"sku": "a", "quantity": 0, "unit_price": "1"}], "lines[0].quantity"),
        ([{"sku": "a", "quantity": 10**10, "unit_price": "1"}], "lines[0].quantity"),
    ],
)
async def test_out_of_range_arguments_are_invalid(
    nc: NATS, lines: list[dict[str, Any]], field: str
) -> None:
    """Unknown nested fields, unbounded or float money and unbounded quantities are invalid,
    naming the field as a dotted path, and store nothing."""
    async with run_worker(nc, AGGREGATES):
        body = codec.dumps({"user_id": "u-1", "lines": lines})
        error = (await ask(nc, "cmd.order.o-1.create", body))["error"]
        assert (error["code"], error["details"]["field"]) == ("invalid", field)
    assert await message_count(nc) == 0


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Cqrs-Causation-Id", "c" * 70_000),
        ("Cqrs-Correlation-Id", "c" * 257),
        ("Cqrs-Correlation-Id", "with space"),
        ("Cqrs-Command-Id", "x" * 129),
    ],
)
async def test_oversized_or_odd_ids_in_headers_are_invalid(
    nc: NATS, header: str, value: str
) -> None:
    """Command, correlation and causation ids over their length cap or charset are invalid."""
    async with run_worker(nc, AGGREGATES):
        body = codec.dumps(ORDER)
        error = (await ask(nc, "cmd.order.o-1.create", body, {header: value}))["error"]
        assert (error["code"], error["details"]["field"]) == ("invalid", header)
        await still_serves(nc, "o-after-header")
    assert await message_count(nc) == 1


@dataclass
class Blobs:
    sizes: dict[str, int] = field(default_factory=dict)


blobs = Projection("blobs", Blobs, follows=[order])


@blobs.on("order.created.v2")
def blob_created(model: Blobs, event: Any, meta: EventMeta) -> None:
    model.sizes[meta.aggregate_id] = 1


@blobs.query("everything")
def everything(model: Blobs) -> str:
    return "b" * 2_000_000  # a reply no server accepts


async def test_query_inputs_and_answers_out_of_range(nc: NATS) -> None:
    """A huge id, a minimum sequence past 2^64-1 and an answer over the max payload each get a
    short invalid error, and the replica serves on over the same connection."""
    async with run_replica(nc, orders, SETTINGS), run_replica(nc, blobs, SETTINGS):
        body = codec.dumps({"order_id": "o" * (nc.max_payload - 500)})
        error = (await ask(nc, "query.orders.get_order_by_id", body))["error"]
        assert (error["code"], error["details"]["field"]) == ("invalid", "order_id")
        for value, code in (("18446744073709551616", "invalid"), ("-1", "invalid")):
            headers = {"Cqrs-Min-Seq": value}
            error = (await ask(nc, "query.orders.get_order_by_id", b"{}", headers))["error"]
            assert error["code"] == code
        max_seq = {"Cqrs-Min-Seq": str(2**64 - 1)}
        body = codec.dumps({"order_id": "o-1"})
        error = (await ask(nc, "query.orders.get_order_by_id", body, max_seq))["error"]
        assert error["code"] == "stale"
        error = (await ask(nc, "query.blobs.everything", b""))["error"]
        assert (error["code"], error["details"]["reason"]) == ("invalid", "too_large")
        assert nc.is_connected
        with pytest.raises(InvalidInput) as missing:
            await Client(nc).query("orders", "get_order_by_id", {})
        assert missing.value.details["field"] == "order_id"

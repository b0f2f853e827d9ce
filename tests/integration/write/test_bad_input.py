"""Bad input over the wire: each gets its error code (body and micro headers), nothing is stored."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NATS

from aggregates import AGGREGATES
from runtime import Client, InvalidInput, run_worker
from runtime.wire import codec

from ..support import counter, message_count

DEFINITIONS = [*AGGREGATES, counter]
ORDER = {"user_id": "u-1", "lines": [{"sku": "a", "quantity": 1, "unit_price": "2.50"}]}


@pytest.mark.parametrize(
    ("subject", "body", "code", "field"),
    [
        ("cmd.order.o-1.create", b'{"user_id": "u-1", "lines": [', "invalid", None),
        ("cmd.order.o-1.create", b"[1, 2, 3]", "invalid", "$"),
        ("cmd.order.o-1.create", b'"a string"', "invalid", "$"),
        ("cmd.order.o-1.create", b"\xff\xfe\x00", "invalid", None),
        ("cmd.order.o-1.teleport", codec.dumps(ORDER), "unknown_command", None),
        (
            "cmd.order.o-1.create",
            b'{"user_id": "u-1", "lines": [{"sku": "a", "quantity": "1", "unit_price": "1"}]}',
            "invalid",
            "lines[0].quantity",
        ),
        ("cmd.order.o-1.create", b'{"user_id": 5, "lines": []}', "invalid", "user_id"),
        (
            "cmd.order.o-1.create",
            b'{"lines": [{"sku": "a", "quantity": 1, "unit_price": "1"}]}',
            "invalid",
            "user_id",
        ),
        (
            "cmd.order.o-1.create",
            b'{"user_id": "u-1", "lines": [], "extra": 1}',
            "invalid",
            "extra",
        ),
        ("cmd.order.o@1.create", codec.dumps(ORDER), "invalid", "id"),
        ("cmd.order.o-1%.create", codec.dumps(ORDER), "invalid", "id"),
        ("cmd.order." + "x" * 129 + ".create", codec.dumps(ORDER), "invalid", "id"),
        ("cmd.user.u-1.create", b'{"name": "A", "email": "not-an-email"}', "invalid", "email"),
        (
            "cmd.user.u-1.create",
            b'{"name": "A", "email": "a@b.io", "role": "root"}',
            "invalid",
            "role",
        ),
        ("cmd.order.o-1.cancel", b"{}", "rejected", None),
        ("cmd.user.u-1.change_role", b'{"role": "admin"}', "rejected", None),
    ],
)
async def test_bad_command_requests(
    nc: NATS, subject: str, body: bytes, code: str, field: str | None
) -> None:
    """Malformed JSON, non-objects, unknown commands, wrong types, bad ids and business-rule
    violations are answered with their code in the body and the micro error headers."""
    async with run_worker(nc, DEFINITIONS):
        before = await message_count(nc)
        reply = await nc.request(subject, body, timeout=5)
    error = codec.loads(reply.data)["error"]
    assert error["code"] == code
    assert error["message"]
    assert reply.headers is not None
    assert reply.headers["Nats-Service-Error-Code"] == code
    if field is not None:
        assert error["details"]["field"] == field
    assert await message_count(nc) == before


async def test_a_rejection_says_which_rule(nc: NATS) -> None:
    """A rejected command's message and details name the rule it broke."""
    async with run_worker(nc, DEFINITIONS):
        client = Client(nc)
        await client.send("order", "o-1", "create", ORDER)
        for status in ("paid", "shipped"):
            await client.send("order", "o-1", "update_status", {"status": status})
        reply = await nc.request("cmd.order.o-1.cancel", b'{"reason": "late"}', timeout=5)
    error = codec.loads(reply.data)["error"]
    assert error["code"] == "rejected"
    assert error["details"]["rule"] == "cancel_before_shipping"
    assert "shipped" in error["message"]
    assert await message_count(nc) == 3


async def test_bad_ids_are_refused_by_the_client_before_sending(nc: NATS) -> None:
    """The client checks ids itself, so a bad id publishes nothing anywhere."""
    received: list[object] = []

    async def record(msg: object) -> None:
        received.append(msg)

    sub = await nc.subscribe(">", cb=record)
    for bad in ("a.b", "a b", "*", ">", ""):
        with pytest.raises(InvalidInput):
            await Client(nc).send("order", bad, "create", ORDER)
    await nc.flush()
    await sub.unsubscribe()
    assert received == []


async def test_an_oversized_command_is_invalid_and_stores_nothing(nc: NATS) -> None:
    """A request over the server's max payload is a clear invalid error, never sent."""
    async with run_worker(nc, DEFINITIONS):
        huge = {"amount": 1, "note": "x" * (nc.max_payload + 1)}
        with pytest.raises(InvalidInput, match="accepts at most"):
            await Client(nc).send("counter", "c-1", "add", huge)
    assert await message_count(nc) == 0


async def test_events_over_the_max_payload_are_invalid_and_store_nothing(nc: NATS) -> None:
    """A command whose events would not fit one JetStream message is invalid; the actor keeps
    its state and serves the next command."""
    async with run_worker(nc, DEFINITIONS):
        client = Client(nc)
        note = "x" * (nc.max_payload // 3)
        with pytest.raises(InvalidInput, match="accepts at most") as info:
            await client.send("counter", "c-1", "add", {"note": note, "copies": 4})
        assert info.value.details["reason"] == "too_large"
        assert (await client.send("counter", "c-1", "add", {})).version == 1
    assert await message_count(nc) == 1

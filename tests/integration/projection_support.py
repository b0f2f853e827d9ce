"""Helpers of the read-side integration tests: workloads, reading the stream back as commits,
and a projection that counts its handler calls."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from nats.aio.client import Client as NATS
from nats.js import api

from aggregates.order import OrderCreated, StatusUpdated, order
from runtime import Client, CommandResult, CqrsError, EventMeta, EventStore, Projection
from runtime.read.consumer import commit_of
from runtime.wire.envelope import Commit, StoredEvent

from ..commits import make_commit

NOW = datetime(2026, 11, 26, tzinfo=UTC).isoformat()


async def read_commits(nc: NATS, stream: str = "EVENTS") -> list[Commit]:
    """Every commit in the stream, oldest first, read with an ordered consumer."""
    js = nc.jetstream()
    total = (await js.stream_info(stream)).state.messages
    commits: list[Commit] = []
    if not total:
        return commits
    sub = await js.subscribe(
        "events.>", stream=stream, ordered_consumer=True, config=api.ConsumerConfig()
    )
    try:
        while len(commits) < total:
            commits.append(commit_of(await sub.next_msg(timeout=5)))
    finally:
        await sub.unsubscribe()
    return commits


def order_created(order_id: str, user_id: str, *, total: str = "10.00") -> Commit:
    """The commit of a new order, as a worker would append it."""
    data = {
        "user_id": user_id,
        "lines": [{"sku": "sku-1", "quantity": 1, "unit_price": total}],
        "total": total,
        "created_at": NOW,
        "currency": "EUR",
    }
    return _commit(order_id, "create", 1, StoredEvent("order.created.v2", data))


def order_paid(order_id: str) -> Commit:
    data = {"status": "paid", "previous": "created", "at": NOW}
    return _commit(order_id, "update_status", 2, StoredEvent("order.status_updated.v1", data))


def _commit(order_id: str, command: str, version: int, event: StoredEvent) -> Commit:
    return make_commit(
        "order", order_id, command, version, event, command_id=uuid.uuid4().hex, recorded_at=NOW
    )


async def append_orders(
    store: EventStore, count: int, *, prefix: str = "o", user_of: Any = None, lanes: int = 32
) -> int:
    """Create ``count`` orders and pay every other one, appended straight to the stream;
    return the last stream sequence."""
    last = 0

    async def one(i: int) -> None:
        nonlocal last
        order_id = f"{prefix}-{i}"
        user_id = user_of(i) if user_of else f"u-{i % 13}"
        seq, _ = await store.append(order_created(order_id, user_id), 0)
        if i % 2:
            seq, _ = await store.append(order_paid(order_id), seq)
        last = max(last, seq)

    for start in range(0, count, lanes):
        async with anyio.create_task_group() as tg:
            for i in range(start, min(start + lanes, count)):
                tg.start_soon(one, i)
    return last


async def send_random_commands(
    client: Client, count: int, *, seed: int, lanes: int = 32
) -> list[CommandResult]:
    """``count`` random user and order commands (some rejected) sent through a worker."""
    rng = random.Random(seed)
    users = [f"u-{seed}-{i}" for i in range(25)]
    orders = [f"o-{seed}-{i}" for i in range(300)]
    plan: list[tuple[str, str, str, dict[str, Any]]] = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.15:
            u = rng.choice(users)
            plan.append(("user", u, "create", {"name": u, "email": f"{u}@example.com"}))
        elif roll < 0.25:
            u = rng.choice(users)
            email = f"{rng.choice(users)}@example.org"
            plan.append(("user", u, "change_email", {"email": email}))
        elif roll < 0.3:
            role = rng.choice(["customer", "support", "admin"])
            plan.append(("user", rng.choice(users), "change_role", {"role": role}))
        elif roll < 0.6:
            lines = [
                {"sku": f"s{k}", "quantity": rng.randint(1, 5), "unit_price": f"{k}.{k}5"}
                for k in range(rng.randint(1, 3))
            ]
            args = {"user_id": rng.choice(users), "lines": lines}
            plan.append(("order", rng.choice(orders), "create", args))
        elif roll < 0.9:
            status = rng.choice(["paid", "shipped", "delivered"])
            plan.append(("order", rng.choice(orders), "update_status", {"status": status}))
        else:
            plan.append(("order", rng.choice(orders), "cancel", {"reason": "random"}))
    results: list[CommandResult] = []
    steps = iter(plan)

    async def lane() -> None:
        for aggregate, aggregate_id, command, args in steps:
            try:
                results.append(await client.send(aggregate, aggregate_id, command, args))
            except CqrsError as exc:
                assert exc.code == "rejected", exc

    async with anyio.create_task_group() as tg:
        for _ in range(lanes):
            tg.start_soon(lane)
    return results


@dataclass
class Statuses:
    """A small read model: order id -> status."""

    status: dict[str, str] = field(default_factory=dict)


@dataclass
class Calls:
    n: int = 0
    seqs: list[int] = field(default_factory=list)


def counting(
    name: str = "tally",
    *,
    version: int = 1,
    on_poison: Any = "halt",
    poison_user: str | None = None,
) -> tuple[Projection[Statuses], Calls]:
    """A projection of order statuses that counts its handler calls (and, given
    ``poison_user``, fails on every order of that user)."""
    calls = Calls()
    projection = Projection(name, Statuses, follows=[order], version=version, on_poison=on_poison)

    @projection.on("order.created.v2")
    def created(model: Statuses, event: OrderCreated, meta: EventMeta) -> None:
        calls.n += 1
        calls.seqs.append(meta.seq)
        if event.user_id == poison_user:
            raise RuntimeError(f"cannot project orders of {poison_user}")
        model.status[meta.aggregate_id] = "created"

    @projection.on("order.status_updated.v1")
    def updated(model: Statuses, event: StatusUpdated, meta: EventMeta) -> None:
        calls.n += 1
        calls.seqs.append(meta.seq)
        model.status[meta.aggregate_id] = event.status.value

    @projection.query("status_of")
    def status_of(model: Statuses, args: dict[str, Any]) -> str | None:
        return model.status.get(str(args.get("order_id")))

    return projection, calls

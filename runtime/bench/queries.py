"""``cqrs bench queries``: queries/s of a projection replica against a hand-written responder,
and, with ``metrics``, of a twin replica with the process's metrics on.

The stream is prefilled with one commit per account of the commands benchmark's aggregate; a
replica of a one-dict projection answers ``balance {id}``. The baseline is a nats-py
subscription answering from a dict of the same rows. The metrics side is a second replica, of a
twin projection (so it has a subject of its own), built while the process's metrics are on; the
OpenTelemetry API is there without an SDK, as in production without tracing. Every side is
warmed, then timed in alternating rounds so a noisy neighbour slows all alike.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import nats
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ..domain.projection import EventMeta, Projection
from ..errors import NotFound
from ..read.replicas import run_replica
from ..read.settings import ProjectorSettings
from ..transport.streams import StreamSettings
from ..wire.envelope import Commit, StoredEvent
from ..write.store import EventStore
from .commands import Deposited, account, metrics_while_built
from .common import Measurement, bench_server, cost_ratios, cpu_ratio, drive, merge

Ask = Callable[[int], Awaitable[bool]]


@dataclass(frozen=True)
class QueryBenchConfig:
    rows: int = 10_000
    queries: int = 20_000
    in_flight: int = 64
    rounds: int = 4
    metrics: bool = False  # add a side with metrics on
    nats_url: str | None = None


@dataclass
class Balances:
    by_id: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BalanceOf:
    id: str


def credit(model: Balances, event: Deposited, meta: EventMeta) -> None:
    model.by_id[meta.aggregate_id] = model.by_id.get(meta.aggregate_id, 0) + event.amount


def balance(model: Balances, args: BalanceOf) -> int:
    found = model.by_id.get(args.id)
    if found is None:
        raise NotFound(f"no account {args.id!r}")
    return found


def make_balances(name: str) -> Projection[Balances]:
    """The bench projection under ``name`` (twins serve the sides that differ)."""
    projection = Projection(name, Balances, follows=[account])
    projection.on(f"{account.name}.deposited.v1")(credit)
    projection.query("balance")(balance)
    return projection


async def prefill(url: str, rows: int, run: str) -> int:
    """One deposit commit per account; return the last stream sequence."""
    nc = await nats.connect(url)
    store = EventStore(nc, StreamSettings())
    await store.start()
    last = 0
    counter = iter(range(rows))

    async def lane() -> None:
        nonlocal last
        for i in counter:
            commit = Commit(
                aggregate=account.name,
                aggregate_id=f"{run}-{i}",
                command="deposit",
                command_id=f"{run}-{i}",
                correlation_id=f"{run}-{i}",
                causation_id=None,
                version=1,
                events=[StoredEvent(f"{account.name}.deposited.v1", {"amount": i + 1})],
                recorded_at="2026-11-26T12:00:00+00:00",
            )
            seq, _ = await store.append(commit, 0)
            last = max(last, seq)

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(64):
                tg.start_soon(lane)
    finally:
        await store.stop()
        await nc.close()
    return last


def _asker(caller: NATS, subject: str, bodies: list[bytes]) -> Ask:
    async def ask(i: int) -> bool:
        reply = await caller.request(subject, bodies[i % len(bodies)], timeout=30)
        return b'"result"' in reply.data

    return ask


async def bench_queries(config: QueryBenchConfig) -> dict[str, Any]:
    """Run every side against one server; return the comparison."""
    run = uuid.uuid4().hex[:6]
    bodies = [orjson.dumps({"id": f"{run}-{i}"}) for i in range(config.rows)]
    async with bench_server(config.nats_url) as url:
        last = await prefill(url, config.rows, run)
        connections = [await nats.connect(url) for _ in range(3)]
        server_nc, baseline_nc, caller = connections
        try:
            async with contextlib.AsyncExitStack() as stack:
                settings = ProjectorSettings(
                    replica=f"bench-{run}", snapshot_every=None, snapshot_interval=None
                )
                plain = make_balances("benchbal")
                replica = await stack.enter_async_context(run_replica(server_nc, plain, settings))
                sides = {"runtime": _asker(caller, "query.benchbal.balance", bodies)}
                if config.metrics:
                    with metrics_while_built(True):
                        observed = await stack.enter_async_context(
                            run_replica(server_nc, make_balances("benchbalobs"), settings)
                        )
                    await observed.wait_for(last, 120)
                    sides["metrics"] = _asker(caller, "query.benchbalobs.balance", bodies)
                await replica.wait_for(last, 120)
                rows, seq = replica.model.by_id, replica.applied

                async def respond(msg: Msg) -> None:
                    found = rows.get(orjson.loads(msg.data).get("id"))
                    await msg.respond(orjson.dumps({"result": found, "seq": seq}))

                sub = await baseline_nc.subscribe("bench.balance", "bench", respond)
                stack.push_async_callback(sub.unsubscribe)
                for nc in (server_nc, baseline_nc):  # every subscription is known to the server
                    await nc.flush()
                sides = {"baseline": _asker(caller, "bench.balance", bodies), **sides}
                measured = await _alternate(sides, config)
        finally:
            for nc in connections:
                await nc.close()
    return _result(measured, config)


async def _alternate(sides: dict[str, Ask], config: QueryBenchConfig) -> dict[str, Measurement]:
    for name, ask in sides.items():
        await drive(name, min(config.rows, 2_000), config.in_flight, ask)
    results: dict[str, list[Measurement]] = {name: [] for name in sides}
    per_round = max(1, config.queries // config.rounds)
    order = list(sides.items())
    for r in range(config.rounds):
        # Every other round backwards, so no side always runs right after the same one.
        for name, ask in order if r % 2 == 0 else order[::-1]:
            results[name].append(await drive(name, per_round, config.in_flight, ask))
    return {name: merge(name, parts) for name, parts in results.items()}


def _result(measured: dict[str, Measurement], config: QueryBenchConfig) -> dict[str, Any]:
    base, ours = measured["baseline"], measured["runtime"]
    result: dict[str, Any] = {
        "benchmark": "queries",
        "rows": config.rows,
        "in_flight": config.in_flight,
        "rounds": config.rounds,
        "baseline": base.summary(),
        "runtime": ours.summary(),
        "query_ratio": round(ours.per_second / base.per_second, 3) if base.per_second else 0,
        # Both sides run in this process and share the caller: the ratio of this process's CPU
        # per query is what a machine without neighbours would show (median over the rounds).
        "query_cpu_ratio": cpu_ratio(base, ours),
    }
    if "metrics" in measured:
        observed = measured["metrics"]
        result["metrics"] = observed.summary()
        result.update(cost_ratios(ours, observed))
    return result

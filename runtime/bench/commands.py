"""``cqrs bench commands``: command throughput of the runtime against a hand-written responder.

Both sides do the same I/O per command: a NATS request in, one JetStream publish with
``Nats-Expected-Last-Subject-Sequence`` and ``Nats-Msg-Id``, a reply out. With ``metrics`` a
third side is a second worker with the process's metrics on (and the OpenTelemetry API without
an SDK, as in production without tracing), serving a twin aggregate, so the cost of counting is
measured in the same rounds as the rest. The baseline is the
smallest correct nats-py program for that: a queue subscription whose callback spawns a task per
request and remembers each aggregate's last sequence in a dict. Both are warmed over every
aggregate first (one command each), so the timed phase compares steady-state throughput; the
timed commands run in alternating rounds so a noisy neighbour slows both sides alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import nats
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ..domain.aggregate import Aggregate
from ..observability import metrics
from ..ops.heap import settle_heap
from ..ownership.coordinator import OwnershipSettings
from ..transport.streams import StreamSettings, ensure_event_stream
from ..write.worker import WorkerSettings, run_worker
from .common import Measurement, bench_server, cost_ratios, drive, merge

Send = Callable[[str, str], Awaitable[bool]]  # (aggregate id, command id) -> ok


@dataclass(frozen=True, slots=True)
class Deposit:
    amount: int


@dataclass(frozen=True, slots=True)
class Deposited:
    amount: int


def deposit(state: int, cmd: Deposit) -> Deposited:
    return Deposited(cmd.amount)


def deposited(state: int, event: Deposited) -> int:
    return state + event.amount


def make_account(name: str) -> Aggregate[int]:
    """The one-event bench aggregate under ``name`` (twins serve the sides that differ)."""
    aggregate: Aggregate[int] = Aggregate(name, 0, snapshot_every=None)
    aggregate.command("deposit")(deposit)
    aggregate.event(f"{name}.deposited.v1")(deposited)
    return aggregate


account = make_account("benchacct")
observed_account = make_account("benchobs")


async def with_event_stream(url: str) -> None:
    """Create the event stream up front, so no timed side pays for it."""
    setup = await nats.connect(url)
    try:
        await ensure_event_stream(setup.jetstream(), StreamSettings())
    finally:
        await setup.close()


@dataclass(frozen=True)
class CommandBenchConfig:
    commands: int = 20_000
    in_flight: int = 64
    aggregates: int = 10_000
    nats_url: str | None = None
    rounds: int = 4
    metrics: bool = False  # add a side with metrics on


def _sender(caller: NATS, prefix: str) -> Send:
    """Deposits sent as requests to ``<prefix>.<id>.deposit``: the same client code for both
    sides, so that only the serving sides differ."""

    async def send(aggregate_id: str, command_id: str) -> bool:
        reply = await caller.request(
            f"{prefix}.{aggregate_id}.deposit",
            orjson.dumps({"amount": 1}),
            timeout=30,
            headers={"Cqrs-Command-Id": command_id},
        )
        return b'"error"' not in reply.data

    return send


@contextlib.asynccontextmanager
async def baseline_side(url: str) -> AsyncIterator[Send]:
    """A hand-written responder doing the same append, and a sender for it."""
    responder = await nats.connect(url)
    caller = await nats.connect(url)
    js = responder.jetstream()
    last: dict[str, int] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def append(msg: Msg) -> None:
        aggregate_id = msg.subject.split(".")[2]
        body = orjson.loads(msg.data)
        headers = {
            "Nats-Expected-Last-Subject-Sequence": str(last.get(aggregate_id, 0)),
            "Nats-Msg-Id": (msg.headers or {}).get("Cqrs-Command-Id") or uuid.uuid4().hex,
        }
        try:
            ack = await js.publish(
                f"events.benchbase.{aggregate_id}",
                orjson.dumps([{"type": "deposited", "data": body}]),
                headers=headers,
            )
        except Exception as exc:
            await msg.respond(orjson.dumps({"error": {"code": "conflict", "message": str(exc)}}))
            return
        last[aggregate_id] = ack.seq
        await msg.respond(orjson.dumps({"seq": ack.seq, "id": aggregate_id}))

    async def on_request(msg: Msg) -> None:
        task = asyncio.create_task(append(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    sub = await responder.subscribe("bench.base.*.*", queue="bench", cb=on_request)
    try:
        yield _sender(caller, "bench.base")
    finally:
        await sub.unsubscribe()
        await caller.close()
        await responder.close()


@contextlib.asynccontextmanager
async def runtime_side(
    url: str, aggregate: Aggregate[int] = account, *, with_metrics: bool = False
) -> AsyncIterator[Send]:
    """A worker serving ``aggregate`` (with the process's metrics on, if asked), and a sender."""
    worker_nc = await nats.connect(url)
    caller = await nats.connect(url)
    try:
        async with contextlib.AsyncExitStack() as stack:
            # A lease bucket per aggregate type: workers of different types in one process must
            # not share a membership, or partitions go to members that do not serve them.
            settings = WorkerSettings(
                ownership=OwnershipSettings(bucket=f"{aggregate.name}_leases")
            )
            with metrics_while_built(with_metrics):
                await stack.enter_async_context(run_worker(worker_nc, [aggregate], settings))
            settle_heap()  # as `cqrs worker` does once started (the baseline gains too)
            yield _sender(caller, f"cmd.{aggregate.name}")
    finally:
        await caller.close()
        await worker_nc.close()


@contextlib.contextmanager
def metrics_while_built(on: bool) -> Iterator[None]:
    """Metrics on for the components built inside (they look them up once, when built), off
    again afterwards, so sides with and without them run side by side in one process."""
    if not on:
        yield
        return
    metrics.enable()
    try:
        yield
    finally:
        metrics.disable()


async def compare(
    url: str, config: CommandBenchConfig, sides: dict[str, Send], run: str
) -> dict[str, Measurement]:
    """Warm every side over all aggregates, then time alternating rounds of each side."""
    per_round = max(1, config.commands // config.rounds)
    results: dict[str, list[Measurement]] = {name: [] for name in sides}

    def lane_for(name: str, send: Send, phase: str) -> Callable[[int], Awaitable[bool]]:
        return lambda i: send(f"{run}-{i % config.aggregates}", f"{name}-{run}-{phase}-{i}")

    for name, send in sides.items():
        await drive(name, config.aggregates, config.in_flight, lane_for(name, send, "warm"))
    order = list(sides.items())
    for r in range(config.rounds):
        # Every other round backwards, so no side always runs right after the same one.
        for name, send in order if r % 2 == 0 else order[::-1]:
            results[name].append(
                await drive(name, per_round, config.in_flight, lane_for(name, send, f"r{r}"))
            )
    return {name: merge(name, parts) for name, parts in results.items()}


async def bench_commands(config: CommandBenchConfig) -> dict[str, Any]:
    """Run baseline and runtime against the same server; return the comparison."""
    run = uuid.uuid4().hex[:6]
    async with bench_server(config.nats_url) as url:
        await with_event_stream(url)
        async with contextlib.AsyncExitStack() as stack:
            sides = {
                "baseline": await stack.enter_async_context(baseline_side(url)),
                "runtime": await stack.enter_async_context(runtime_side(url)),
            }
            if config.metrics:
                sides["metrics"] = await stack.enter_async_context(
                    runtime_side(url, observed_account, with_metrics=True)
                )
            measured = await compare(url, config, sides, run)
    base, ours = measured["baseline"], measured["runtime"]
    extra: dict[str, Any] = {}
    if "metrics" in measured:
        observed = measured["metrics"]
        extra = {"metrics": observed.summary(), **cost_ratios(ours, observed)}
    return {
        "benchmark": "commands",
        "commands": base.count,
        "in_flight": config.in_flight,
        "aggregates": config.aggregates,
        "rounds": config.rounds,
        "baseline": base.summary(),
        "runtime": ours.summary(),
        "throughput_ratio": round(ours.per_second / base.per_second, 3) if base.per_second else 0,
        **extra,
    }

"""``cqrs bench commands``: command throughput of the runtime against a hand-written responder.

Both sides do the same I/O per command: a NATS request in, one JetStream publish with
``Nats-Expected-Last-Subject-Sequence`` and ``Nats-Msg-Id``, a reply out. The baseline is the
smallest correct nats-py program for that: a queue subscription whose callback spawns a task per
request and remembers each aggregate's last sequence in a dict. Both are warmed over every
aggregate first (one command each), so the timed phase compares steady-state throughput.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import nats
import orjson
from nats.aio.msg import Msg

from ..client import Client
from ..domain import Aggregate
from ..errors import CqrsError
from ..store import StreamSettings, ensure_event_stream
from ..worker import run_worker
from .common import Measurement, bench_server, drive


@dataclass(frozen=True, slots=True)
class Deposit:
    amount: int


@dataclass(frozen=True, slots=True)
class Deposited:
    amount: int


account: Aggregate[int] = Aggregate("benchacct", 0, snapshot_every=None)


@account.command("deposit")
def deposit(state: int, cmd: Deposit) -> Deposited:
    return Deposited(cmd.amount)


@account.event("benchacct.deposited.v1")
def deposited(state: int, event: Deposited) -> int:
    return state + event.amount


@dataclass(frozen=True)
class CommandBenchConfig:
    commands: int = 20_000
    in_flight: int = 64
    aggregates: int = 10_000
    nats_url: str | None = None


async def _baseline(url: str, config: CommandBenchConfig, run: str) -> Measurement:
    responder = await nats.connect(url)
    caller = await nats.connect(url)
    js = responder.jetstream()
    last: dict[str, int] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def append(msg: Msg) -> None:
        aggregate_id = msg.subject.split(".")[2]
        body = orjson.loads(msg.data)
        subject = f"events.benchbase.{aggregate_id}"
        headers = {
            "Nats-Expected-Last-Subject-Sequence": str(last.get(aggregate_id, 0)),
            "Nats-Msg-Id": msg.headers["Cqrs-Command-Id"] if msg.headers else uuid.uuid4().hex,
        }
        try:
            ack = await js.publish(
                subject, orjson.dumps([{"type": "deposited", "data": body}]), headers=headers
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
    phase = ["warm"]

    async def one(i: int) -> bool:
        aggregate_id = f"{run}-{i % config.aggregates}"
        reply = await caller.request(
            f"bench.base.{aggregate_id}.deposit",
            orjson.dumps({"amount": 1}),
            timeout=30,
            headers={"Cqrs-Command-Id": f"b-{run}-{phase[0]}-{i}"},
        )
        return b'"error"' not in reply.data

    try:
        await drive("warm-up", config.aggregates, config.in_flight, one)
        phase[0] = "timed"
        measured = await drive("nats-py baseline", config.commands, config.in_flight, one)
    finally:
        await sub.unsubscribe()
        await caller.close()
        await responder.close()
    return measured


async def _runtime(url: str, config: CommandBenchConfig, run: str) -> Measurement:
    worker_nc = await nats.connect(url)
    caller = await nats.connect(url)
    client = Client(caller, timeout=30)
    phase = ["warm"]

    async def one(i: int) -> bool:
        try:
            await client.send(
                "benchacct",
                f"{run}-{i % config.aggregates}",
                "deposit",
                {"amount": 1},
                command_id=f"r-{run}-{phase[0]}-{i}",
            )
        except CqrsError:
            return False
        return True

    try:
        async with run_worker(worker_nc, [account]):
            await drive("warm-up", config.aggregates, config.in_flight, one)
            phase[0] = "timed"
            measured = await drive("cqrs-runtime", config.commands, config.in_flight, one)
    finally:
        await caller.close()
        await worker_nc.close()
    return measured


async def bench_commands(config: CommandBenchConfig) -> dict[str, Any]:
    """Run baseline and runtime against the same server; return the comparison."""
    run = uuid.uuid4().hex[:6]
    async with bench_server(config.nats_url) as url:
        setup = await nats.connect(url)
        try:
            await ensure_event_stream(setup.jetstream(), StreamSettings())
        finally:
            await setup.close()
        baseline = await _baseline(url, config, run)
        runtime = await _runtime(url, config, run + "w")
    return {
        "benchmark": "commands",
        "commands": config.commands,
        "in_flight": config.in_flight,
        "aggregates": config.aggregates,
        "baseline": baseline.summary(),
        "runtime": runtime.summary(),
        "throughput_ratio": round(runtime.per_second / baseline.per_second, 3)
        if baseline.per_second
        else 0.0,
    }

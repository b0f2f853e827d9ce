"""``cqrs bench projections``: the read side against hand-written nats-py baselines.

Four measurements, each in the same run and on the same server as its baseline:

- **Catch-up**: a replica of the example ``orders`` projection (default settings: batches of
  500, snapshots every 20,000 commits in the background) applies a prefilled stream from the
  first event, against the smallest correct nats-py loop over the same subjects: a durable pull
  consumer, ``fetch(500)`` and an ack per message (decoding nothing). Rounds alternate between
  the two, so a noisy neighbour slows both alike.
- **Snapshot** of an ``orders`` read model of ``rows`` rows, built in the process (it reads no
  stream): writing (encode + upload) and restoring (download + inflate + decode) it through the
  Object Store.
- **Queries**: ``get_order_by_id`` with ``in_flight`` requests outstanding, against a nats-py
  subscription answering from a dict of the same rows.
- **Rebuild beside live** (:mod:`runtime.bench.switch`): version 2's catch-up while version 1
  answers ``in_flight`` concurrent queries, as a ratio to its catch-up alone, and whether every
  query was answered during the switch.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import msgspec
import nats
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api
from rich.console import Console
from rich.table import Table

from ..read.projector import Projector
from ..read.replicas import run_replica
from ..read.settings import ProjectorSettings
from ..read.snapshots import ProjectionSnapshot, ProjectionSnapshotStore, encode_snapshot
from ..transport.streams import StreamSettings, ensure_event_stream
from ..wire.envelope import (
    H_COMMAND,
    H_COMMAND_ID,
    H_EVENT_TYPES,
    H_MSG_ID,
    H_RECORDED_AT,
    H_VERSION,
)
from .common import Measurement, bench_server, drive, merge, wait_for_responders
from .switch import rebuild_beside_live

Say = Callable[[str], None]
NOW = "2026-11-26T12:00:00.000000+00:00"
STEPS = (("paid", "created"), ("shipped", "paid"), ("delivered", "shipped"))
PARTS = ("catchup", "snapshot", "queries", "switch")
# The parts that read the prefilled stream: without them, none is written.
READ_STREAM = {"catchup", "queries", "switch"}


@dataclass(frozen=True)
class ProjectionBenchConfig:
    events: int = 200_000
    rounds: int = 2
    rows: int = 1_000_000
    queries: int = 20_000
    in_flight: int = 64
    nats_url: str | None = None
    parts: tuple[str, ...] = PARTS

    def check(self) -> None:
        if self.events < 1_000 or self.rounds < 1 or self.rows < 1 or self.queries < 1:
            raise ValueError("--events must be >= 1000 and the other counts >= 1")
        unknown = set(self.parts) - set(PARTS)
        if unknown or not self.parts:
            raise ValueError(f"--parts takes some of {', '.join(PARTS)}, not {sorted(unknown)}")


def _orders() -> tuple[Any, Any, Any, Any]:
    """The example projection and its row types (user code: imported only when benchmarking)."""
    from projections.orders import LineView, OrdersModel, OrderView, orders

    return orders, OrdersModel, OrderView, LineView


# -- the stream -------------------------------------------------------------------------------


def _commit(i: int) -> tuple[str, bytes, dict[str, str]]:
    """Commit ``i``: orders are created, paid, shipped and delivered, four commits each."""
    order, step = divmod(i, 4)
    if step == 0:
        data: dict[str, Any] = {
            "user_id": f"u-{order % 5_000}",
            "lines": [{"sku": f"sku-{order % 97}", "quantity": 2, "unit_price": "9.95"}],
            "total": "19.90",
            "created_at": NOW,
            "currency": "EUR",
        }
        event = {"type": "order.created.v2", "data": data}
    else:
        status, previous = STEPS[step - 1]
        data = {"status": status, "previous": previous, "at": NOW}
        event = {"type": "order.status_updated.v1", "data": data}
    command_id = uuid.uuid4().hex
    headers = {
        H_MSG_ID: command_id,
        H_COMMAND_ID: command_id,
        H_COMMAND: "create" if step == 0 else "update_status",
        H_EVENT_TYPES: str(event["type"]),
        H_VERSION: str(step + 1),
        H_RECORDED_AT: NOW,
    }
    return f"events.order.o-{order}", orjson.dumps([event]), headers


async def prefill(nc: NATS, events: int, say: Say) -> int:
    """Append ``events`` commits the way workers would (pipelined); return the last sequence."""
    js = nc.jetstream(timeout=30)
    await ensure_event_stream(js, StreamSettings())
    started = time.perf_counter()
    pending: list[asyncio.Future[Any]] = []
    for i in range(events):
        subject, body, headers = _commit(i)
        pending.append(await js.publish_async(subject, body, headers=headers))
        if len(pending) >= 2_000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    last = int((await js.stream_info("EVENTS")).state.last_seq)
    say(f"prefilled {events:,} commits in {time.perf_counter() - started:.1f}s")
    return last


# -- catch-up ---------------------------------------------------------------------------------


async def baseline_catchup(url: str, name: str, expected: int) -> Measurement:
    """fetch(500) + an ack per message on a durable pull consumer, until all are read."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=30)
        started = time.perf_counter()
        config = api.ConsumerConfig(
            durable_name=name,
            ack_policy=api.AckPolicy.EXPLICIT,
            max_ack_pending=-1,
            filter_subject="events.order.>",
        )
        await js.add_consumer("EVENTS", config)
        sub = await js.pull_subscribe_bind(name, stream="EVENTS")
        got = 0
        while got < expected:
            msgs = await sub.fetch(500, timeout=10)
            for msg in msgs:
                await msg.ack()
            got += len(msgs)
        seconds = time.perf_counter() - started
        await sub.unsubscribe()
        return Measurement("baseline", got, seconds, [])
    finally:
        await nc.close()


async def runtime_catchup(url: str, settings: ProjectorSettings, last: int) -> Measurement:
    """A replica of ``orders`` from an empty model until it reflects ``last``."""
    orders = _orders()[0]
    nc = await nats.connect(url)
    try:
        projector = Projector(nc, orders, settings)
        started = time.perf_counter()
        async with projector.running():
            if not await projector.wait_for(last, timeout=3_600):
                raise RuntimeError(f"the replica stopped at {projector.applied}")
            seconds = time.perf_counter() - started
        return Measurement("runtime", projector.events, seconds, [])
    finally:
        await nc.close()


# -- snapshots --------------------------------------------------------------------------------


def big_model(rows: int) -> Any:
    """An ``orders`` model of ``rows`` rows, each with its own strings, like a real one."""
    _, model_type, order_view, line_view = _orders()
    model = model_type()
    for i in range(rows):
        order_id, user_id = f"ord-{i:08d}", f"u-{i % 50_000:06d}"
        model.orders[order_id] = order_view(
            order_id=order_id,
            user_id=user_id,
            status=("created", "paid", "shipped", "delivered")[i % 4],
            total=f"{(i % 1000) + 0.5:.2f}",
            currency="EUR",
            lines=[line_view(f"sku-{i % 997}", 1 + i % 5, f"{(i % 1000) + 0.5:.2f}")],
            created_at=NOW,
            updated_at=NOW,
        )
        model.by_user.setdefault(user_id, []).append(order_id)
    return model


async def snapshot_bench(url: str, rows: int, bucket: str, say: Say) -> dict[str, Any]:
    """Write and restore a snapshot of a ``rows``-row read model; time both."""
    orders = _orders()[0]
    gc.disable()  # building the model is set-up, not measured; spare it the collector
    try:
        model = big_model(rows)
    finally:
        gc.enable()
    say(f"built a read model of {rows:,} rows")
    nc = await nats.connect(url)
    try:
        store = ProjectionSnapshotStore(nc, bucket, timeout=60)
        await store.start()
        info = ProjectionSnapshot(
            projection=orders.name,
            replica="bench",
            seq=rows,
            schema=orders.version,
            events=rows,
            taken_at=NOW,
        )
        model_mb = _rss_mb()
        peak = _PeakRss()
        started = time.perf_counter()
        blob = await asyncio.to_thread(encode_snapshot, orders, model, info)
        stored = await store.save(orders, info, blob)
        write = time.perf_counter() - started
        write_peak = peak.rise()
        del model, blob
        gc.collect()
        peak = _PeakRss()
        started, cpu = time.perf_counter(), time.process_time()
        restored = await store.load(orders, stored)
        restore = time.perf_counter() - started
        restore_cpu = time.process_time() - cpu
        restore_peak = peak.rise()
        # The young collection the collector makes at its next chance, timed here: what it
        # still has to scan of the restored model is part of what a restore costs.
        started = time.perf_counter()
        gc.collect(1)
        collect = time.perf_counter() - started
        if len(restored.orders) != rows:
            raise RuntimeError(f"restored {len(restored.orders)} rows, not {rows}")
        return {
            "rows": rows,
            "bytes": stored.size,
            "write_seconds": round(write, 3),
            "restore_seconds": round(restore, 3),
            # this process's CPU (all its threads): what neighbours on the machine do not move
            "restore_cpu_seconds": round(restore_cpu, 3),
            "young_collection_after_restore_seconds": round(collect, 3),
            # Peak resident memory over what the process held before (None off Linux): the
            # model's own size (``model_rss_mb``, as built) is most of the restore's.
            "model_rss_mb": model_mb,
            "write_peak_rss_rise_mb": write_peak,
            "restore_peak_rss_rise_mb": restore_peak,
        }
    finally:
        await nc.close()


def _status_mb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _rss_mb() -> int | None:
    return _status_mb("VmRSS:")


class _PeakRss:
    """The rise of the process's peak resident memory from now (Linux: the peak is reset by
    writing 5 to ``/proc/self/clear_refs``)."""

    def __init__(self) -> None:
        self.before = _rss_mb()
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            self.resettable = True
        except OSError:
            self.resettable = False

    def rise(self) -> int | None:
        peak = _status_mb("VmHWM:")
        if not self.resettable or peak is None or self.before is None:
            return None
        return peak - self.before


# -- queries ----------------------------------------------------------------------------------


Ask = Callable[[int], Awaitable[bool]]


def _asker(caller: NATS, subject: str, ids: list[str]) -> Ask:
    bodies = [orjson.dumps({"order_id": order_id}) for order_id in ids]

    async def ask(i: int) -> bool:
        reply = await caller.request(subject, bodies[i % len(bodies)], timeout=30)
        return b'"result"' in reply.data

    return ask


async def query_bench(
    url: str, settings: ProjectorSettings, ids: list[str], config: ProjectionBenchConfig
) -> tuple[Measurement, Measurement]:
    """get_order_by_id through a replica's query service vs a dict responder, same rows."""
    orders = _orders()[0]
    server_nc: NATS = await nats.connect(url)
    baseline_nc: NATS = await nats.connect(url)
    caller: NATS = await nats.connect(url)
    try:
        async with run_replica(server_nc, orders, settings) as replica:
            rows = replica.model.orders
            seq = replica.applied

            encode = msgspec.json.Encoder().encode  # the rows are msgspec Structs

            async def respond(msg: Msg) -> None:
                row = rows.get(orjson.loads(msg.data).get("order_id"))
                await msg.respond(encode({"result": row, "seq": seq}))

            sub = await baseline_nc.subscribe("bench.orders.get_order_by_id", "bench", respond)
            sides = {
                "baseline": _asker(caller, "bench.orders.get_order_by_id", ids),
                "runtime": _asker(caller, "query.orders.get_order_by_id", ids),
            }
            for subject in ("bench.orders.get_order_by_id", "query.orders.get_order_by_id"):
                await wait_for_responders(caller, subject, orjson.dumps({"order_id": ids[0]}))
            for name, ask in sides.items():  # warm both
                await drive(name, 2_000, config.in_flight, ask)
            results: dict[str, list[Measurement]] = {name: [] for name in sides}
            per_round = max(1, config.queries // config.rounds)
            for _ in range(config.rounds):
                for name, ask in sides.items():
                    results[name].append(await drive(name, per_round, config.in_flight, ask))
            await sub.unsubscribe()
        return merge("baseline", results["baseline"]), merge("runtime", results["runtime"])
    finally:
        for nc in (caller, baseline_nc, server_nc):
            await nc.close()


# -- all of it --------------------------------------------------------------------------------


def _ratio(ours: Measurement, base: Measurement) -> float:
    return round(ours.per_second / base.per_second, 3) if base.per_second else 0.0


async def bench_projections(config: ProjectionBenchConfig, say: Say) -> dict[str, Any]:
    """Run every measurement against one server; return the comparison as one dict."""
    run = uuid.uuid4().hex[:6]
    async with bench_server(config.nats_url) as url:
        last = expected = 0
        if set(config.parts) & READ_STREAM:  # (the snapshot part builds its own model)
            setup = await nats.connect(url)
            try:
                last = await prefill(setup, config.events, say)
                expected = int((await setup.jetstream().stream_info("EVENTS")).state.messages)
            finally:
                await setup.close()
        base_rounds: list[Measurement] = []
        ours_rounds: list[Measurement] = []
        settings = ProjectorSettings(replica=f"bench-{run}")
        for r in range(config.rounds if "catchup" in config.parts else 0):
            base_rounds.append(await baseline_catchup(url, f"bench-{run}-{r}", expected))
            # A bucket per round, so each round starts from an empty model.
            round_settings = replace(
                settings, replica=f"bench-{run}-{r}", snapshot_bucket=f"bench-{run}-{r}"
            )
            ours_rounds.append(await runtime_catchup(url, round_settings, last))
            say(
                f"catch-up round {r + 1}: baseline {base_rounds[-1].per_second:,.0f}/s, "
                f"runtime {ours_rounds[-1].per_second:,.0f}/s"
            )
        base, ours = merge("baseline", base_rounds), merge("runtime", ours_rounds)
        snapshot = None
        if "snapshot" in config.parts:
            snapshot = await snapshot_bench(url, config.rows, f"bench-{run}-rows", say)
            say(
                f"snapshot of {config.rows:,} rows: write {snapshot['write_seconds']:.2f}s, "
                f"restore {snapshot['restore_seconds']:.2f}s"
            )
        query_base = query_ours = Measurement("none", 0, 0.0, [])
        if "queries" in config.parts:
            ids = [f"o-{random.randrange(config.events // 4)}" for _ in range(10_000)]
            # From the last catch-up round's final snapshot, when there was one.
            bucket = f"bench-{run}-{len(ours_rounds) - 1}" if ours_rounds else f"bench-{run}-q"
            query_settings = replace(settings, replica=f"bench-{run}-q", snapshot_bucket=bucket)
            query_base, query_ours = await query_bench(url, query_settings, ids, config)
        switch = None
        if "switch" in config.parts:
            switch = await rebuild_beside_live(url, config.events, config.in_flight, say, run)
    return {
        "benchmark": "projections",
        "events": expected,
        "rounds": config.rounds,
        "catchup": {
            "baseline": base.summary(),
            "runtime": ours.summary(),
            "baseline_rounds": [round(m.per_second, 1) for m in base_rounds],
            "runtime_rounds": [round(m.per_second, 1) for m in ours_rounds],
        },
        "parts": list(config.parts),
        "catchup_ratio": _ratio(ours, base),
        "snapshot": snapshot,
        "queries": {
            "in_flight": config.in_flight,
            "baseline": query_base.summary(),
            "runtime": query_ours.summary(),
        },
        "query_ratio": _ratio(query_ours, query_base),
        "rebuild_beside_live": switch,
    }


def print_result(result: dict[str, Any], console: Console) -> None:
    """The comparison as tables, one per measurement (of the parts that ran)."""
    parts = result["parts"]
    table = Table(title=f"cqrs bench projections: {result['events']:,} commits")
    for column in ("measure", "baseline", "runtime", "ratio"):
        table.add_column(column, justify="right")
    catchup, queries = result["catchup"], result["queries"]
    if "catchup" in parts:
        table.add_row(
            "catch-up events/s",
            f"{catchup['baseline']['per_second']:,.0f}",
            f"{catchup['runtime']['per_second']:,.0f}",
            f"{result['catchup_ratio']:.2f}",
        )
    if "queries" in parts:
        table.add_row(
            f"get_order_by_id/s ({queries['in_flight']} in flight)",
            f"{queries['baseline']['per_second']:,.0f}",
            f"{queries['runtime']['per_second']:,.0f}",
            f"{result['query_ratio']:.2f}",
        )
        table.add_row(
            "query p50 / p99 ms",
            f"{queries['baseline']['p50_ms']:.2f} / {queries['baseline']['p99_ms']:.2f}",
            f"{queries['runtime']['p50_ms']:.2f} / {queries['runtime']['p99_ms']:.2f}",
            "",
        )
    switch = result["rebuild_beside_live"]
    if switch is not None:
        table.add_row(
            f"version 2 catch-up/s beside version 1 ({switch['in_flight']} queries in flight)",
            f"{switch['alone_per_second']:,.0f} alone",
            f"{switch['beside_live_per_second']:,.0f}",
            f"{switch['ratio']:.2f}",
        )
    if set(parts) & READ_STREAM:
        console.print(table)
    if switch is not None:
        outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(switch["outcomes"].items()))
        console.print(
            f"queries during the switch and the rollback: {switch['availability']:.4%} answered "
            f"right ({outcomes}; by version {switch['versions']})"
        )
    snap = result["snapshot"]
    if snap is not None:
        console.print(
            f"snapshot of {snap['rows']:,} rows ({snap['bytes'] / 1e6:.1f} MB stored): "
            f"write {snap['write_seconds']:.2f}s, restore {snap['restore_seconds']:.2f}s; "
            f"peak memory rise: write {snap['write_peak_rss_rise_mb']} MB, restore "
            f"{snap['restore_peak_rss_rise_mb']} MB (model {snap['model_rss_mb']} MB as built)"
        )

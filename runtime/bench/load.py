"""``cqrs bench load``: cold loads of an old, busy aggregate, with and without a snapshot.

Reading an aggregate's history costs in proportion to the span of the stream it covers. So the
stream is filled with ``messages`` commits across ``aggregates`` aggregates, one of which (the
measured one) gets ``events`` of them spread evenly over the whole stream. A cold load (a new
actor, nothing in memory) then either folds all its commits or reads its snapshot, taken
``tail`` events before the end (what a crash leaves, 50 on average with ``snapshot_every=100``),
plus the commits after it; both in the same run, on the same stream, through the actor's own
loading code. Loads from a current snapshot (what passivation, shutdown, or a last commit that
completed ``snapshot_every`` events leave) are timed too.

The second part measures what a cached, idle aggregate costs: ``live`` example orders (created
and paid) are loaded into one actor host by a no-op command each, and the resident memory they
add is divided among them; the states themselves are measured separately so the runtime's own
share per aggregate can be told apart.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import nats
import orjson
from nats.js.client import JetStreamContext

from ..domain.aggregate import Aggregate
from ..errors import CqrsError
from ..transport.streams import StreamSettings
from ..write.actor import Actor, CommandRequest
from ..write.host import ActorHost, HostSettings
from ..write.snapshots import Snapshot, SnapshotStore, encode_snapshot, remembered
from ..write.store import EventStore
from .common import Measurement, bench_server

Say = Callable[[str], None]
WINDOW = 4000  # publishes in flight while filling the stream


@dataclass(frozen=True, slots=True)
class Deposit:
    amount: Decimal
    memo: str = ""


@dataclass(frozen=True, slots=True)
class Deposited:
    amount: Decimal
    memo: str


@dataclass(frozen=True, slots=True)
class Account:
    balance: Decimal = Decimal(0)
    deposits: int = 0
    last_memo: str = ""


account: Aggregate[Account] = Aggregate("bench_account", Account())


@account.command("deposit")
def deposit(state: Account, cmd: Deposit) -> Deposited:
    return Deposited(cmd.amount, cmd.memo)


@account.event("bench_account.deposited.v1")
def deposited(state: Account, event: Deposited) -> Account:
    return Account(state.balance + event.amount, state.deposits + 1, event.memo)


@dataclass(frozen=True)
class LoadBenchConfig:
    messages: int = 1_000_000
    aggregates: int = 10_000
    events: int = 10_000  # of the measured aggregate
    tail: int = 50  # events after its snapshot
    loads: int = 50  # timed cold loads with the snapshot
    full_loads: int = 10  # timed cold loads by full replay
    live: int = 100_000  # cached idle orders for the memory measurement
    scoped_reads: bool = False  # also time the loads through scoped consumers (same stream)

    def check(self) -> None:
        if not 2 <= self.aggregates <= self.messages - self.events + 1:
            raise ValueError("--aggregates must be at least 2 and leave each a message")
        if not 1 <= self.events <= self.messages // 2:
            raise ValueError("--events must be between 1 and half of --messages")
        if not 0 <= self.tail < self.events:
            raise ValueError("--tail must be below --events")
        if min(self.loads, self.full_loads) < 1 or self.live < 0:
            raise ValueError("--loads and --full-loads must be positive, --live not negative")


def _commit(command_id: str, version: int, command: str, events: bytes, types: str) -> Any:
    headers = {
        "Cqrs-Command-Id": command_id,
        "Cqrs-Correlation-Id": command_id,
        "Cqrs-Command": command,
        "Cqrs-Event-Types": types,
        "Cqrs-Version": str(version),
        "Cqrs-Recorded-At": "2026-11-26T00:00:00+00:00",
    }
    return headers, events


async def publish_all(js: JetStreamContext, messages: Iterator[tuple[str, Any]]) -> list[int]:
    """Publish commits pipelined, ``WINDOW`` acks at a time; return their stream sequences."""
    seqs: list[int] = []
    pending = []
    for subject, (headers, body) in messages:
        pending.append(await js.publish_async(subject, body, headers=headers))
        if len(pending) >= WINDOW:
            seqs += [ack.seq for ack in [await f for f in pending]]
            pending.clear()
    seqs += [ack.seq for ack in [await f for f in pending]]
    return seqs


def account_commits(config: LoadBenchConfig) -> Iterator[tuple[str, Any]]:
    """The stream's commits: the hot aggregate every ``messages // events`` messages."""
    every = config.messages // config.events
    others = config.aggregates - 1
    versions = [0] * others
    hot_version = 0
    other = 0
    for i in range(config.messages):
        if i % every == every - 1 and hot_version < config.events:
            hot_version += 1
            aggregate_id, version = "hot", hot_version
        else:
            versions[other] += 1
            aggregate_id, version = f"acc-{other}", versions[other]
            other = (other + 1) % others
        body = b'[{"type":"bench_account.deposited.v1","data":{"amount":"12.50","memo":"m%d"}}]' % i
        commit = _commit(f"c{i}", version, "deposit", body, "bench_account.deposited.v1")
        yield f"events.bench_account.{aggregate_id}", commit


def order_commits(live: int) -> Iterator[tuple[str, Any]]:
    """Each order's ``order.created.v2`` commit, then its ``order.status_updated.v1`` one."""
    for i in range(live):
        created = {
            "user_id": f"u-{i % 997}",
            "lines": [{"sku": "book-42", "quantity": 2, "unit_price": "19.90"}],
            "total": "39.80",
            "created_at": "2026-11-26T00:00:00+00:00",
            "currency": "EUR",
        }
        body = orjson.dumps([{"type": "order.created.v2", "data": created}])
        yield f"events.order.o-{i}", _commit(f"o{i}-1", 1, "create", body, "order.created.v2")
    for i in range(live):
        paid = {"status": "paid", "previous": "created", "at": "2026-11-26T00:00:01+00:00"}
        body = orjson.dumps([{"type": "order.status_updated.v1", "data": paid}])
        commit = _commit(f"o{i}-2", 2, "update_status", body, "order.status_updated.v1")
        yield f"events.order.o-{i}", commit


Load = Callable[[], Awaitable[Actor]]


async def timed_loads(
    rounds: int, sides: list[tuple[Load, int]], check: Callable[[Actor], None]
) -> list[Measurement]:
    """Time each side's loads, interleaved in ``rounds`` so both meet the same server state
    (right after filling the stream, the server is still busy with it for a while)."""
    for load, _ in sides:
        check(await load())  # warm: connections, server caches, code paths
    latencies: list[list[float]] = [[] for _ in sides]
    started = time.perf_counter()
    for _ in range(rounds):
        for side, (load, count) in enumerate(sides):
            for _ in range(count):
                t = time.perf_counter()
                actor = await load()
                latencies[side].append((time.perf_counter() - t) * 1000)
                check(actor)
    seconds = time.perf_counter() - started
    return [Measurement("load", len(ms), seconds, ms) for ms in latencies]


def scoped_results(
    direct: dict[str, Measurement], scoped: dict[str, Measurement]
) -> dict[str, Any]:
    """The scoped reads' latencies per kind of load, and each median's ratio to direct get's."""
    out: dict[str, Any] = {}
    for kind, loads in scoped.items():
        out[f"load_p50_ms_{kind}_scoped"] = round(loads.percentile(0.5), 3)
        out[f"load_p99_ms_{kind}_scoped"] = round(loads.percentile(0.99), 3)
        out[f"scoped_p50_ratio_{kind}"] = round(
            loads.percentile(0.5) / max(direct[kind].percentile(0.5), 1e-9), 2
        )
    return out


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def deep_size(root: Any, seen: set[int]) -> int:
    """Bytes of ``root`` and everything it reaches that is not in ``seen`` (which it extends)."""
    total, stack = 0, [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, bool | type):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack += [*obj.keys(), *obj.values()]
        elif isinstance(obj, list | tuple | set | frozenset):
            stack += list(obj)
        elif hasattr(obj, "__slots__"):
            stack += [getattr(obj, s) for s in obj.__slots__ if hasattr(obj, s)]
        elif hasattr(obj, "__dict__"):
            stack.append(vars(obj))
    return total


async def measure_memory(
    store: EventStore, snapshots: SnapshotStore, live: int, say: Say
) -> dict[str, Any]:
    from aggregates.order import Status, order

    say(f"memory: storing {live:,} orders (created, paid)")
    await publish_all(store.js, order_commits(live))
    host = ActorHost(store, [order], HostSettings(max_actors=live + 1000), snapshots=snapshots)
    args = order.parse_command("update_status", {"status": "paid"})  # a no-op once paid
    failures: list[CqrsError] = []

    async def reply(result: dict[str, Any] | CqrsError) -> None:
        if isinstance(result, CqrsError):
            failures.append(result)

    say(f"memory: loading {live:,} orders into one actor host")
    async with host.running():
        gc.collect()
        before = rss_bytes()
        started = time.perf_counter()
        for i in range(live):
            request = CommandRequest("update_status", args, f"m{i}", f"m{i}", None, reply)
            host.submit("order", f"o-{i}", request)
            if i % WINDOW == WINDOW - 1:
                await host.drained()
        await host.drained()
        seconds = time.perf_counter() - started
        gc.collect()
        after = rss_bytes()
        actors = list(host.actors.values())
        if failures or len(actors) != live or any(not a.loaded for a in actors):
            raise RuntimeError(f"memory phase failed: {failures[:3]}")
        shared = {id(x) for x in (order, store, snapshots, order.initial, *Status)}
        seen = set(shared)
        state_bytes = sum(deep_size(a.state, seen) for a in actors)
        seen = shared | {id(a.state) for a in actors}
        runtime_bytes = sys.getsizeof(host.actors) + sum(
            deep_size(key, seen) + deep_size(actor, seen) for key, actor in host.actors.items()
        )
    rss_each = (after - before) / live if before is not None and after is not None else None
    return {
        "memory_live_aggregates": live,
        "memory_load_seconds": round(seconds, 2),
        "memory_rss_bytes_per_aggregate": round(rss_each) if rss_each is not None else None,
        "memory_state_bytes_per_aggregate": round(state_bytes / live),
        "memory_runtime_bytes_per_aggregate": round(runtime_bytes / live),
        "memory_rss_beyond_state_bytes_per_aggregate": (
            round(rss_each - state_bytes / live) if rss_each is not None else None
        ),
    }


async def take_snapshot(
    store: EventStore, snapshots: SnapshotStore, up_to_seq: int | None, last_revision: int
) -> tuple[Snapshot, int]:
    """Write the snapshot of the hot aggregate after its commit at ``up_to_seq`` (None: all)."""
    writer = Actor(account, "hot", store)
    for commit in await store.history(account.name, "hot", up_to_seq=up_to_seq):
        writer.apply_commit(commit)
    taken = Snapshot(writer.state, writer.version, writer.last_seq, remembered(writer))
    value = encode_snapshot(account, store.stream, "hot", taken)
    revision, _ = await snapshots.save(
        account, "hot", value, seq=taken.seq, version=taken.version, last_revision=last_revision
    )
    return taken, revision


async def bench_load(config: LoadBenchConfig, say: Say = lambda _: None) -> dict[str, Any]:
    """Run both parts; return one flat result dict."""
    config.check()
    async with bench_server(None) as url:  # never a real server: its stream cannot be purged
        nc = await nats.connect(url)
        store = EventStore(nc, StreamSettings(duplicate_window=1.0), timeout=30.0)
        await store.start()
        snapshots = SnapshotStore(nc, store.stream)
        await snapshots.start()
        scoped = EventStore(nc, replace(store.settings, scoped_reads=True), timeout=30.0)
        await scoped.start()
        try:
            say(f"filling the stream with {config.messages:,} commits")
            started = time.perf_counter()
            seqs = await publish_all(store.js, account_commits(config))
            fill_seconds = time.perf_counter() - started

            every = config.messages // config.events
            tail_seq = seqs[every * (config.events - config.tail) - 1]
            expected = account.fold([Deposited(Decimal("12.50"), "")] * config.events)

            def check(actor: Actor) -> None:
                state = replace(actor.state, last_memo="")
                if actor.version != config.events or state != expected:
                    raise RuntimeError(f"loaded version {actor.version}, state {actor.state}")

            def from_snapshot(
                version: int, reads: EventStore = store
            ) -> Callable[[], Awaitable[Actor]]:
                async def load() -> Actor:
                    actor = Actor(account, "hot", reads, snapshots)
                    await actor.catch_up()
                    if actor.snapshot_version != version:
                        raise RuntimeError("the load did not start from the snapshot")
                    return actor

                return load

            def full_replay(reads: EventStore = store) -> Callable[[], Awaitable[Actor]]:
                async def load() -> Actor:
                    actor = Actor(account, "hot", reads)
                    await actor.catch_up()
                    return actor

                return load

            # The snapshot the runtime would have written `tail` events before the end.
            taken, revision = await take_snapshot(store, snapshots, tail_seq, 0)
            say(
                f"{config.full_loads} cold loads by full replay of {config.events:,} events, "
                f"{config.loads} from the snapshot + {config.tail} events, interleaved"
            )
            per_round = -(-config.loads // config.full_loads)
            sides = [(full_replay(), 1), (from_snapshot(taken.version), per_round)]
            if config.scoped_reads:  # the same loads through scoped consumers, interleaved
                sides += [
                    (full_replay(scoped), 1),
                    (from_snapshot(taken.version, scoped), per_round),
                ]
            slow, fast, *scoped_loads = await timed_loads(config.full_loads, sides, check)
            # And the one it keeps for an aggregate whose last commit completed a snapshot_every.
            current, _ = await take_snapshot(store, snapshots, None, revision)
            say(f"{config.loads} cold loads from a current snapshot")
            sides = [(from_snapshot(current.version), config.loads)]
            if config.scoped_reads:
                sides.append((from_snapshot(current.version, scoped), config.loads))
            fresh, *scoped_fresh = await timed_loads(1, sides, check)
            result: dict[str, Any] = {
                "benchmark": "load",
                "messages": config.messages,
                "aggregates": config.aggregates,
                "events": config.events,
                "tail": config.tail,
                "fill_seconds": round(fill_seconds, 1),
                "fill_per_second": round(config.messages / fill_seconds),
                "load_p50_ms_snapshot": round(fast.percentile(0.5), 3),
                "load_p99_ms_snapshot": round(fast.percentile(0.99), 3),
                "load_p50_ms_full_replay": round(slow.percentile(0.5), 3),
                "load_p99_ms_full_replay": round(slow.percentile(0.99), 3),
                "load_p50_ms_snapshot_current": round(fresh.percentile(0.5), 3),
                "load_p99_ms_snapshot_current": round(fresh.percentile(0.99), 3),
                "loads_snapshot": fast.count,
                "loads_full_replay": slow.count,
            }
            result["speedup_p50"] = round(
                result["load_p50_ms_full_replay"] / max(result["load_p50_ms_snapshot"], 1e-9), 1
            )
            if config.scoped_reads:
                result |= scoped_results(
                    {"full_replay": slow, "snapshot": fast, "snapshot_current": fresh},
                    dict(zip(("full_replay", "snapshot"), scoped_loads, strict=True))
                    | {"snapshot_current": scoped_fresh[0]},
                )
            if config.live:
                result |= await measure_memory(store, snapshots, config.live, say)
            return result
        finally:
            await scoped.stop()
            await store.stop()
            await nc.close()

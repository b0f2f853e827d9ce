"""``cqrs bench processes``: how fast a process manager reacts, and how punctual its timers are.

Two measurements on one throw-away server, in the same run:

- **Reacting**: the example payment deadline catching up over a prefilled stream of order commits
  (created, paid, shipped, delivered), from the first event: every event it reacts to costs a read
  of the instance, and the created and paid ones a compare-and-set write and a schedule or a
  purge. Alternating rounds time a replica of the ``orders`` projection catching up over the same
  stream, so the figure is read against the projection catch-up of the same machine. (The
  deadline is set years ahead, so no timer fires while it is measured.)
- **Replicas**: the same catch-up by 1, then 2 ``cqrs processes`` subprocesses sharing the
  partitions, each count with a fresh instance bucket and fresh consumers.
- **Timers**: ``--timers`` timers of a bench process manager come due a few seconds after being
  set, 20 ms apart; the delay of each is taken when the server fired it (the stored time of the
  fired message) and when the runtime's reaction runs, against its due time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import nats

from ..domain.process_manager import ProcessManager, Reaction, TimerFired
from ..processes.instances import Instance, InstanceStore
from ..processes.layout import partitions_caught_up, partitions_delivered
from ..processes.run import run_process_managers
from ..processes.settings import ProcessSettings
from ..processes.timers import TimerStore
from ..read.settings import ProjectorSettings
from .common import Measurement, bench_server, merge
from .projections import Say, prefill, runtime_catchup

TIMER_LEAD = 3.0  # seconds between setting the first timer and its due time
TIMER_SPACING = 0.02
POLL = 0.05  # seconds between looks at the consumers of replicas in other processes


@dataclass(frozen=True)
class ProcessBenchConfig:
    events: int = 20_000
    rounds: int = 2
    timers: int = 100
    nats_url: str | None = None
    replicas: tuple[int, ...] = (1, 2)  # `cqrs processes` subprocesses sharing the partitions

    def check(self) -> None:
        if self.events < 100 or self.rounds < 1 or self.timers < 1:
            raise ValueError("--events must be >= 100, --rounds and --timers >= 1")


@contextlib.contextmanager
def _far_deadline() -> Iterator[None]:
    key = "CQRS_ORDER_PAYMENT_TIMEOUT"
    old = os.environ.get(key)
    os.environ[key] = str(10 * 365 * 86_400)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


async def replicas_reacting(url: str, replicas: int, bucket: str, last: int) -> Measurement:
    """``replicas`` ``cqrs processes`` subprocesses sharing the payment deadline's partitions,
    from the first delivery until every event up to ``last`` is acknowledged (their start-up,
    the same for any count, is left out)."""
    env = {
        **os.environ,
        "CQRS_APP": "aggregates:AGGREGATES,aggregates:PROCESS_MANAGERS",
        "NATS_URL": url,
        "CQRS_PROCESS_BUCKET": bucket,
        "CQRS_LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-m", "runtime.cli", "processes", "--start", "all"]
    procs = [
        await anyio.open_process(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(replicas)
    ]
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=30)
        partitions = ProcessSettings().partitions
        with anyio.fail_after(3_600):
            await _until(lambda: partitions_delivered(js, "payment_deadline", partitions))
            started = time.perf_counter()
            await _until(lambda: partitions_caught_up(js, "payment_deadline", partitions, last))
        seconds = time.perf_counter() - started
        return Measurement(f"{replicas} replicas", last, seconds, [])
    finally:
        await nc.close()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        with anyio.move_on_after(30):
            for proc in procs:
                await proc.wait()
        for proc in procs:
            if proc.returncode is None:
                proc.kill()


async def _until(condition: Callable[[], Awaitable[object]]) -> None:
    """Look at the replicas' consumers every ``POLL`` until ``condition()`` holds (they live in
    other processes: nothing here can signal it)."""
    while True:
        if await condition():
            return
        await anyio.sleep(POLL)


def order_activity() -> ProcessManager[int]:
    """A bench-only process manager whose reactions only change state: it counts each order's
    events (no command, no timer), so each batch costs the instances' read and write alone."""
    from aggregates.order import order

    manager: ProcessManager[int] = ProcessManager("bench_order_activity", 0, follows=[order])

    def count(state: int, event: object) -> Reaction[int]:
        return Reaction(state + 1)

    for event_type in order.event_types:
        manager.on(event_type)(count)
    return manager


async def reacting(
    url: str, settings: ProcessSettings, last: int, manager: ProcessManager[Any] | None = None
) -> Measurement:
    """The payment deadline (or ``manager``) from the first event until it acknowledged
    ``last``."""
    from aggregates.payment_deadline import payment_deadline

    nc = await nats.connect(url)
    try:
        started = time.perf_counter()
        managers = [manager or payment_deadline]
        async with run_process_managers(nc, managers, settings) as (reactor,):
            with anyio.fail_after(3_600):
                await reactor.wait_for(last)
            seconds = time.perf_counter() - started
        return Measurement("process manager", last, seconds, [])
    finally:
        await nc.close()


def _delays(due_and_seen: list[tuple[datetime, datetime]]) -> dict[str, float]:
    ms = sorted((seen - due).total_seconds() * 1000 for due, seen in due_and_seen)
    return {
        "count": len(ms),
        "p50_ms": round(ms[len(ms) // 2], 1),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1),
        "max_ms": round(ms[-1], 1),
        "min_ms": round(ms[0], 1),
    }


async def timer_delays(url: str, count: int, run: str) -> dict[str, Any]:
    """Set ``count`` timers and measure how late the server and the runtime see each."""
    from aggregates.order import order

    reacted: list[tuple[datetime, datetime]] = []
    all_reacted = anyio.Event()
    fired: list[tuple[datetime, datetime]] = []
    name = f"bench_timers_{run}"
    manager: ProcessManager[int] = ProcessManager(name, 0, follows=[order])

    @manager.timer("due")
    def due(state: int, timer: TimerFired) -> None:
        reacted.append((timer.due, datetime.now(UTC)))  # a bench probe, not a pure reaction
        fired.append((timer.due, timer.fired_at or timer.due))
        if len(reacted) >= count:
            all_reacted.set()

    nc = await nats.connect(url)
    try:
        settings = ProcessSettings(start="all")
        async with run_process_managers(nc, [manager], settings):
            instances, timers = InstanceStore(nc), TimerStore(nc)
            await instances.start()
            first_due = datetime.now(UTC) + timedelta(seconds=TIMER_LEAD)
            for i in range(count):
                key, timer_id = f"k-{i}", f"t{run}{i}"
                at = first_due + timedelta(seconds=i * TIMER_SPACING)
                stored = Instance(state=0, timers={"due": timer_id})
                await instances.put(name, key, stored, manager.state_version)
                await timers.set(name, key, "due", timer_id=timer_id, at=at)
            with anyio.fail_after(TIMER_LEAD + count * TIMER_SPACING + 60):
                await all_reacted.wait()
    finally:
        await nc.close()
    return {"fired": _delays(fired), "reacted": _delays(reacted)}


async def bench_processes(config: ProcessBenchConfig, say: Say) -> dict[str, Any]:
    """Run both measurements against one server; return them as one dict."""
    run = uuid.uuid4().hex[:6]
    with _far_deadline():
        async with bench_server(config.nats_url) as url:
            setup = await nats.connect(url)
            try:
                last = await prefill(setup, config.events, say)
            finally:
                await setup.close()
            pm_rounds: list[Measurement] = []
            state_rounds: list[Measurement] = []
            proj_rounds: list[Measurement] = []
            activity = order_activity()
            for r in range(config.rounds):
                projection = ProjectorSettings(
                    replica=f"bench-{run}-{r}", snapshot_bucket=f"bench-{run}-{r}"
                )
                proj_rounds.append(await runtime_catchup(url, projection, last))
                settings = ProcessSettings(start="all", bucket=f"bench-{run}-{r}-pm")
                # A fresh consumer per round: the old one is deleted by name.
                await _forget_consumer(url, settings.partitions)
                pm_rounds.append(await reacting(url, settings, last))
                settings = ProcessSettings(start="all", bucket=f"bench-{run}-{r}-state")
                await _forget_consumer(url, settings.partitions, activity.name)
                state_rounds.append(await reacting(url, settings, last, activity))
                say(
                    f"round {r + 1}: projection {proj_rounds[-1].per_second:,.0f} events/s, "
                    f"process manager {pm_rounds[-1].per_second:,.0f} events/s, "
                    f"state only {state_rounds[-1].per_second:,.0f} events/s"
                )
            shared: dict[int, Measurement] = {}
            for count in config.replicas:
                await _forget_consumer(url, ProcessSettings().partitions)
                shared[count] = await replicas_reacting(url, count, f"bench-{run}-x{count}", last)
                say(f"{count} replicas: {shared[count].per_second:,.0f} events/s")
            delays = await timer_delays(url, config.timers, run)
            say(f"{config.timers} timers: reacted p50 {delays['reacted']['p50_ms']} ms")
    pm, proj = merge("process manager", pm_rounds), merge("projection", proj_rounds)
    state = merge("state only", state_rounds)
    return {
        "benchmark": "processes",
        "events": last,
        "rounds": config.rounds,
        "process_manager_events_per_second": round(pm.per_second, 1),
        "projection_events_per_second": round(proj.per_second, 1),
        "reacting_ratio": round(pm.per_second / proj.per_second, 3) if proj.per_second else 0.0,
        "state_only_events_per_second": round(state.per_second, 1),
        "state_only_ratio": (
            round(state.per_second / proj.per_second, 3) if proj.per_second else 0.0
        ),
        "state_only_rounds": [round(m.per_second, 1) for m in state_rounds],
        "process_manager_rounds": [round(m.per_second, 1) for m in pm_rounds],
        "projection_rounds": [round(m.per_second, 1) for m in proj_rounds],
        "replicas_events_per_second": {
            str(count): round(m.per_second, 1) for count, m in shared.items()
        },
        "timers": delays,
    }


async def _forget_consumer(url: str, partitions: int, manager: str = "payment_deadline") -> None:
    from ..processes.layout import PARTITIONED_STREAM, consumer_name

    nc = await nats.connect(url)
    try:
        for partition in range(partitions):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_consumer(
                    PARTITIONED_STREAM, consumer_name(manager, partition)
                )
    finally:
        await nc.close()

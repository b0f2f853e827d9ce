"""``cqrs bench commands --workers N``: N ``cqrs worker`` processes against one worker.

The runs alternate (``rounds`` of each) on the same server (with the partition mapping, as
deployed), with the same client code and the same number of requests in flight. Each run starts
its workers, waits until every partition has an owner and the owners are spread over all of
them, warms every aggregate once, times the commands, then stops the workers with SIGTERM and
reads what they counted from their ``worker_stopped`` log lines: the conflicts they retried and
the ownership work of the run (lease rounds and renewals, partitions acquired, handed off or
lost, decisions confirmed against the stream). The result is the throughput ratio N workers :
1 worker and the conflict rate, measured in the same run.

The bench aggregate's commands cost the worker little CPU, so on a small machine shared with the
server and the callers extra workers have little to add. ``decide_cpu_us`` serves a bench-only
aggregate instead whose ``decide`` burns that much CPU per command
(:mod:`runtime.bench.cpu_bound`): the domain where scale-out can show.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import nats
import nats.errors
import orjson
from nats.aio.client import Client as NATS

from ..backoff import Backoff
from ..errors import CqrsError
from ..ownership.probe import server_partitions
from ..ownership.report import workers_report
from ..wire.partitions import DEFAULT_PARTITIONS
from . import cpu_bound
from .commands import Send, _sender, with_event_stream
from .common import Measurement, bench_server, drive, merge

APP = "runtime.bench.commands:account"
AGGREGATE = "benchacct"
# What the workers count that says what the run cost beyond the commands (HostStats and
# OwnershipStats fields of their `worker_stopped` lines).
OVERHEAD = (
    "conflicts_retried",
    "fence_checks",
    "fence_catch_ups",
    "rounds",
    "failed_rounds",
    "renewed",
    "acquired",
    "handed_off",
    "lost",
)
SETTLE_TIMEOUT = 60.0
RESENDS = 20
RESEND_BACKOFF = Backoff(first=0.01, maximum=0.5)


@dataclass(frozen=True)
class ScaleBenchConfig:
    workers: int = 3
    commands: int = 20_000
    in_flight: int = 64
    aggregates: int = 10_000
    nats_url: str | None = None
    rounds: int = 2  # alternating 1-worker and N-worker runs, so noise hits both alike
    decide_cpu_us: int = 0  # > 0: the CPU-bound bench aggregate (runtime/bench/cpu_bound.py)

    @property
    def aggregate(self) -> str:
        return cpu_bound.NAME if self.decide_cpu_us else AGGREGATE

    def worker_env(self) -> dict[str, str]:
        if not self.decide_cpu_us:
            return {"CQRS_APP": APP}
        return {"CQRS_APP": cpu_bound.APP, cpu_bound.DECIDE_CPU_US: str(self.decide_cpu_us)}


@contextlib.contextmanager
def worker_processes(
    url: str, count: int, directory: Path, app_env: dict[str, str] | None = None
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` ``cqrs worker`` subprocesses serving the bench aggregate (or the app
    ``app_env`` names); killed on the way out."""
    cqrs = str(Path(sys.executable).parent / "cqrs")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(count):
            env = {
                **os.environ,
                "NATS_URL": url,
                "CQRS_APP": APP,
                **(app_env or {}),
                "CQRS_LOG_FORMAT": "json",
                "CQRS_READY_FILE": str(directory / f"ready-{n}.json"),
            }
            with (directory / f"worker-{n}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [cqrs, "worker"], stdout=log, stderr=subprocess.STDOUT, env=env
                    )
                )
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def settled(
    nc: NATS, stream: str, workers: int, directory: Path, aggregate: str = AGGREGATE
) -> None:
    """Wait until every worker is ready and (on a server that partitions commands) the
    partitions are spread over all of them as the live members assign them, none moving."""
    partitioned = await server_partitions(nc, DEFAULT_PARTITIONS)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        ready = all((directory / f"ready-{n}.json").exists() for n in range(workers))
        if ready and not partitioned:
            return
        if ready:
            report = await workers_report(nc, stream)
            owners = {w["member"] for w in report["workers"] if w["owns"].get(aggregate)}
            if len(owners) == workers and not report["unowned"] and not report["moving"]:
                return
        if time.monotonic() > deadline:
            raise CqrsError(f"{workers} workers did not settle within {SETTLE_TIMEOUT}s")
        await anyio.sleep(0.2)


async def stopped(procs: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            await anyio.to_thread.run_sync(proc.wait, max(0.0, deadline - time.monotonic()))


def children_cpu() -> float:
    """CPU seconds (user and system) of this process's children that have exited."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def stopped_counts(directory: Path, workers: int) -> dict[str, int]:
    """The :data:`OVERHEAD` counts of the workers' ``worker_stopped`` lines, summed."""
    total = dict.fromkeys(OVERHEAD, 0)
    for n in range(workers):
        for line in (directory / f"worker-{n}.log").read_bytes().splitlines():
            if b'"worker_stopped"' in line:
                with contextlib.suppress(ValueError):
                    stopped = orjson.loads(line)
                    for key in OVERHEAD:
                        total[key] += int(stopped.get(key, 0))
    return total


def resending(send: Send) -> Send:
    """``send``, sent again while no worker answers, as the runtime's Client does: during a
    handover a partition has no subscriber for a moment, and a run must not fail for it."""

    async def resend(aggregate_id: str, command_id: str) -> bool:
        for attempt in range(RESENDS):
            try:
                return await send(aggregate_id, command_id)
            except nats.errors.NoRespondersError:
                await anyio.sleep(RESEND_BACKOFF.delay(attempt))
        return await send(aggregate_id, command_id)

    return resend


async def measure(
    url: str, workers: int, config: ScaleBenchConfig
) -> tuple[Measurement, dict[str, int]]:
    """Throughput of ``workers`` worker processes, what they counted (:data:`OVERHEAD`) and
    the CPU time they used, in ms (``worker_cpu_ms``: from start to exit, warm-up included)."""
    run = uuid.uuid4().hex[:6]
    caller = await nats.connect(url)
    cpu_before = children_cpu()
    try:
        send = resending(_sender(caller, f"cmd.{config.aggregate}"))
        with (
            tempfile.TemporaryDirectory(prefix="cqrs-bench-workers-") as tmp,
            worker_processes(url, workers, Path(tmp), config.worker_env()) as procs,
        ):
            await settled(caller, "EVENTS", workers, Path(tmp), config.aggregate)

            def lane(phase: str) -> Any:
                return lambda i: send(f"{run}-{i % config.aggregates}", f"{run}-{phase}-{i}")

            await drive("warm", config.aggregates, config.in_flight, lane("warm"))
            measured = await drive(
                f"{workers} workers", config.commands, config.in_flight, lane("timed")
            )
            await stopped(procs)
            counted = stopped_counts(Path(tmp), workers)
        counted["worker_cpu_ms"] = round((children_cpu() - cpu_before) * 1000)
        return measured, counted
    finally:
        await caller.close()


async def bench_scale(config: ScaleBenchConfig) -> dict[str, Any]:
    """One worker, then ``config.workers`` workers, on the same server; the comparison."""
    async with bench_server(config.nats_url) as url:
        await with_event_stream(url)
        parts: dict[int, list[Measurement]] = {1: [], config.workers: []}
        counts = {n: dict.fromkeys((*OVERHEAD, "worker_cpu_ms"), 0) for n in (1, config.workers)}
        per_round = replace(config, commands=max(1, config.commands // config.rounds))
        for _ in range(config.rounds):
            for workers in parts:
                measured, counted = await measure(url, workers, per_round)
                parts[workers].append(measured)
                for key, value in counted.items():
                    counts[workers][key] += value
    one = merge("1 worker", parts[1])
    many = merge(f"{config.workers} workers", parts[config.workers])
    served = (config.aggregates + per_round.commands) * config.rounds  # warm-up and timed

    def cpu_each(workers: int) -> float:
        """The workers' CPU time per command served, in µs (what they did besides, included)."""
        return round(counts[workers]["worker_cpu_ms"] * 1000 / served, 1)

    one_conflicts = counts[1]["conflicts_retried"]
    many_conflicts = counts[config.workers]["conflicts_retried"]
    return {
        "benchmark": "commands --workers",
        "workers": config.workers,
        "commands": config.commands,
        "in_flight": config.in_flight,
        "aggregates": config.aggregates,
        "rounds": config.rounds,
        "decide_cpu_us": config.decide_cpu_us,
        "one_worker": {
            **one.summary(),
            "conflicts": one_conflicts,
            "worker_cpu_us_per_command": cpu_each(1),
        },
        "n_workers": {
            **many.summary(),
            "conflicts": many_conflicts,
            "worker_cpu_us_per_command": cpu_each(config.workers),
        },
        # Summed over the rounds of each side, from starting the workers to stopping them.
        "overhead": {"one_worker": counts[1], "n_workers": counts[config.workers]},
        "conflict_rate": round(many_conflicts / many.count, 5) if many.count else 0,
        "throughput_ratio": round(many.per_second / one.per_second, 3) if one.per_second else 0,
    }

"""What the benchmarks share: a server to run against, latency statistics, result printing."""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import nats.errors
from nats.aio.client import Client as NATS

from ..errors import Timeout
from ..transport.embedded import embedded_server


@dataclass(frozen=True)
class Measurement:
    """Throughput and latency of one side of a comparison."""

    name: str
    count: int
    seconds: float
    latencies_ms: list[float]
    errors: int = 0
    cpu_seconds: float = 0.0  # this process's CPU time: the sides' own work, whatever the load
    rounds: tuple[Measurement, ...] = ()  # the timed rounds this one merges

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_op(self) -> float:
        return self.cpu_seconds / self.count * 1e6 if self.count else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.per_second, 1),
            "p50_ms": round(self.percentile(0.50), 3),
            "p99_ms": round(self.percentile(0.99), 3),
            "errors": self.errors,
            "cpu_us_per_op": round(self.cpu_us_per_op, 2),
        }


async def wait_for_responders(
    nc: NATS, subject: str, body: bytes, timeout: float = 60.0, period: float = 0.05
) -> None:
    """Return once something answers on ``subject``, as seen from ``nc``.

    A service subscribed on another connection is not visible to ``nc`` at once (more so
    with the machine busy): a first request can get "no responders". Timed runs start after.
    """
    try:
        with anyio.fail_after(timeout):
            while True:
                try:
                    await nc.request(subject, body, timeout=timeout)
                    return
                except nats.errors.NoRespondersError:
                    await anyio.sleep(period)
    except TimeoutError:
        raise Timeout(f"nothing answered on {subject} within {timeout}s") from None


@contextlib.asynccontextmanager
async def bench_server(url: str | None) -> AsyncIterator[str]:
    """The given NATS URL, or a throw-away embedded server with its own store."""
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="cqrs-bench-") as tmp:
        async with embedded_server(Path(tmp) / "jetstream") as server:
            yield server.url


async def drive(
    name: str,
    total: int,
    in_flight: int,
    one: Callable[[int], Awaitable[bool]],
) -> Measurement:
    """Run ``one(i)`` for i in range(total) with ``in_flight`` concurrent lanes; time each."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))

    async def lane() -> None:
        nonlocal errors
        for i in counter:
            started = time.perf_counter()
            ok = await one(i)
            latencies.append((time.perf_counter() - started) * 1000)
            errors += not ok

    started, cpu_started = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(in_flight):
            tg.start_soon(lane)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return Measurement(name, total, seconds, latencies, errors, cpu)


def merge(name: str, parts: list[Measurement]) -> Measurement:
    """One measurement of several timed rounds of the same side."""
    return Measurement(
        name,
        sum(p.count for p in parts),
        sum(p.seconds for p in parts),
        [ms for p in parts for ms in p.latencies_ms],
        sum(p.errors for p in parts),
        sum(p.cpu_seconds for p in parts),
        tuple(parts),
    )


def cost_ratios(plain: Measurement, observed: Measurement) -> dict[str, float]:
    """How a side with metrics on compares with the same side without: throughput, and the
    inverse of this process's CPU time per operation (the throughput ratio a machine without
    neighbours would see, since both sides share the client and the server's work is equal).

    The CPU ratio is the median over rounds run back to back, so a burst of a neighbour's work
    during one round does not decide it.
    """
    return {
        "metrics_ratio": round(observed.per_second / plain.per_second, 3)
        if plain.per_second
        else 0.0,
        "metrics_cpu_ratio": cpu_ratio(plain, observed),
    }


def cpu_ratio(reference: Measurement, other: Measurement) -> float:
    """The reference side's CPU time per operation over the other side's: the median over the
    rounds they ran back to back, so a burst of a neighbour's work in one round does not decide
    it."""
    pairs = zip(reference.rounds or (reference,), other.rounds or (other,), strict=False)
    cpu = [r.cpu_us_per_op / o.cpu_us_per_op for r, o in pairs if o.cpu_us_per_op]
    return round(median(cpu), 3)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0

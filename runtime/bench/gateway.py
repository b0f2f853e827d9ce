"""``cqrs bench gateway``: commands and queries through the HTTP gateway against a hand-written
ASGI forwarder (:mod:`runtime.bench.gateway_baseline`) in the same run.

One embedded nats-server, one worker and one projection replica serve both sides. The gateway
(``cqrs gateway``) and the baseline each run in a process of their own under uvicorn (the
gateway with its connection deadlines and limits, the baseline without), and one load
generator drives both with the same requests: aiohttp, whose client costs a fraction of
httpx's per request, so the generator is not what limits either side. Every
aggregate is warmed first on each side; the timed rounds alternate between the sides so a noisy
neighbour slows both alike.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import nats

from ..domain.app import App
from ..domain.projection import EventMeta, Projection
from ..errors import ConfigurationError, ServerError
from ..ops.run import run_app
from ..transport.embedded import free_port
from .commands import Deposited, account
from .common import Measurement, bench_server, drive, merge

Request = Callable[[int], Awaitable[bool]]


@dataclass
class Balances:
    by_account: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Balance:
    account_id: str


balances = Projection("benchbalances", Balances, follows=[account])


@balances.on("benchacct.deposited.v1")
def deposited(model: Balances, event: Deposited, meta: EventMeta) -> None:
    model.by_account[meta.aggregate_id] = model.by_account.get(meta.aggregate_id, 0) + event.amount


@balances.query("balance")
def balance(model: Balances, args: Balance) -> int:
    return model.by_account.get(args.account_id, 0)


BENCH_APP = App((account,), (balances,))


@dataclass(frozen=True)
class GatewayBenchConfig:
    requests: int = 10_000  # timed requests per side and kind
    in_flight: int = 64
    aggregates: int = 1_000
    rounds: int = 8
    nats_url: str | None = None


@dataclass(frozen=True)
class Side:
    """One HTTP side of the comparison: where it listens and its process."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the side's process has used so far (Linux; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _process(argv: list[str], port: int) -> Iterator[Side]:
    """Run one HTTP side as a subprocess on ``port``; stop it on exit."""
    process = subprocess.Popen(
        [sys.executable, *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "CQRS_LOG_FORMAT": "json"},
    )
    try:
        yield Side(f"http://127.0.0.1:{port}", process.pid)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _wait_listening(url: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            stream = await anyio.connect_tcp("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise ServerError(f"nothing listens on {url} after {timeout}s") from None
            await anyio.sleep(0.1)  # polling period; the wait is on the port
        else:
            await stream.aclose()
            return


@contextlib.asynccontextmanager
async def _sides(url: str) -> AsyncIterator[dict[str, Side]]:
    """Start the baseline and the gateway processes; yield them once they listen."""
    ports = {"baseline": free_port(), "gateway": free_port()}
    cqrs = ["-m", "runtime.cli", "gateway", "--nats", url, "--port", str(ports["gateway"])]
    cqrs += ["--app", "runtime.bench.gateway:BENCH_APP", "--log-level", "warning"]
    base = ["-m", "runtime.bench.gateway_baseline", url, str(ports["baseline"])]
    with _process(base, ports["baseline"]) as baseline, _process(cqrs, ports["gateway"]) as gw:
        sides = {"baseline": baseline, "gateway": gw}
        for name, side in sides.items():
            await _wait_listening(side.url, ports[name])
        yield sides


def _requests(session: Any, base: str, run: str, kind: str, aggregates: int, tag: str) -> Request:
    async def command(i: int) -> bool:
        async with session.post(
            f"{base}/commands/benchacct/{run}-{i % aggregates}/deposit",
            data=b'{"amount": 1}',
            headers={"Content-Type": "application/json", "Idempotency-Key": f"{tag}-{i}"},
        ) as response:
            await response.read()
            return bool(response.status == 200)

    async def query(i: int) -> bool:
        params = {"account_id": f"{run}-{i % aggregates}"}
        async with session.get(f"{base}/queries/benchbalances/balance", params=params) as response:
            await response.read()
            return bool(response.status == 200)

    return command if kind == "commands" else query


async def bench_gateway(config: GatewayBenchConfig) -> dict[str, Any]:
    """Commands and queries through the gateway and through the baseline; the comparison."""
    try:
        import aiohttp
    except ImportError:
        raise ConfigurationError(
            "cqrs bench gateway needs aiohttp: pip install 'cqrs-runtime[bench]'"
        ) from None
    run = uuid.uuid4().hex[:6]
    per_round = max(1, config.requests // config.rounds)
    results: dict[str, dict[str, list[Measurement]]] = {}
    cpu: dict[tuple[str, str], float] = {}  # (kind, side) -> the side's CPU seconds, timed part
    async with bench_server(config.nats_url) as url:
        nc = await nats.connect(url)
        try:
            async with run_app(nc, BENCH_APP), _sides(url) as sides:
                connector = aiohttp.TCPConnector(limit=config.in_flight)
                async with aiohttp.ClientSession(connector=connector) as session:
                    for name, side in sides.items():
                        warm = _requests(
                            session, side.url, run, "commands", config.aggregates, name
                        )
                        await drive(name, config.aggregates, config.in_flight, warm)
                    for kind in ("commands", "queries"):
                        for r in range(config.rounds):
                            for name, side in sides.items():
                                tag = f"{name}-{kind}-{r}"
                                one = _requests(
                                    session, side.url, run, kind, config.aggregates, tag
                                )
                                before = side.cpu_seconds()
                                measured = await drive(name, per_round, config.in_flight, one)
                                cpu[kind, name] = cpu.get((kind, name), 0.0) + (
                                    side.cpu_seconds() - before
                                )
                                results.setdefault(kind, {}).setdefault(name, []).append(measured)
        finally:
            await nc.close()
    out: dict[str, Any] = {"benchmark": "gateway", "in_flight": config.in_flight}
    for kind, rounds in results.items():
        baseline, ours = merge("baseline", rounds["baseline"]), merge("runtime", rounds["gateway"])
        ratio = ours.per_second / baseline.per_second if baseline.per_second else 0.0
        cpu_us = {name: cpu[kind, name] / (per_round * config.rounds) * 1e6 for name in rounds}
        out[kind] = {
            "benchmark": f"gateway {kind}",
            "baseline": {**baseline.summary(), "server_cpu_us": round(cpu_us["baseline"])},
            "runtime": {**ours.summary(), "server_cpu_us": round(cpu_us["gateway"])},
            "throughput_ratio": round(ratio, 3),
            # each round against the baseline round next to it: how much the neighbours moved
            "round_ratios": [
                round(g.per_second / b.per_second, 3) if b.per_second else 0.0
                for b, g in zip(rounds["baseline"], rounds["gateway"], strict=True)
            ],
            # the serving process's CPU per request, baseline / gateway: steadier than req/s
            # on a shared machine, since a neighbour delays a process but spends none of its CPU
            "cpu_ratio": round(cpu_us["baseline"] / cpu_us["gateway"], 3)
            if cpu_us["gateway"]
            else 0.0,
        }
    return out

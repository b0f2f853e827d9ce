"""``cqrs bench gateway``: commands and queries through the HTTP gateway against a hand-written
ASGI forwarder (:mod:`runtime.bench.gateway_baseline`) in the same run.

One embedded nats-server, one worker and one projection replica serve both sides. The gateway
(``cqrs gateway``) and the baseline each run in a process of their own behind the same uvicorn
set-up, and one load generator drives both with the same requests: aiohttp, whose client costs
a fraction of httpx's per request, so the generator is not what limits either side. Every
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
    rounds: int = 4
    nats_url: str | None = None


@contextlib.contextmanager
def _process(argv: list[str], port: int) -> Iterator[str]:
    """Run one HTTP side as a subprocess on ``port``; stop it on exit."""
    process = subprocess.Popen(
        [sys.executable, *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "CQRS_LOG_FORMAT": "json"},
    )
    try:
        yield f"http://127.0.0.1:{port}"
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
async def _sides(url: str) -> AsyncIterator[dict[str, str]]:
    """Start the baseline and the gateway processes; yield their base URLs."""
    ports = {"baseline": free_port(), "gateway": free_port()}
    cqrs = ["-m", "runtime.cli", "gateway", "--nats", url, "--port", str(ports["gateway"])]
    cqrs += ["--app", "runtime.bench.gateway:BENCH_APP", "--log-level", "warning"]
    base = ["-m", "runtime.bench.gateway_baseline", url, str(ports["baseline"])]
    with _process(base, ports["baseline"]) as base_url, _process(cqrs, ports["gateway"]) as gw_url:
        urls = {"baseline": base_url, "gateway": gw_url}
        for name, side_url in urls.items():
            await _wait_listening(side_url, ports[name])
        yield urls


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
    async with bench_server(config.nats_url) as url:
        nc = await nats.connect(url)
        try:
            async with run_app(nc, BENCH_APP), _sides(url) as urls:
                connector = aiohttp.TCPConnector(limit=config.in_flight)
                async with aiohttp.ClientSession(connector=connector) as session:
                    for side, base in urls.items():
                        warm = _requests(session, base, run, "commands", config.aggregates, side)
                        await drive(side, config.aggregates, config.in_flight, warm)
                    for kind in ("commands", "queries"):
                        for r in range(config.rounds):
                            for side, base in urls.items():
                                tag = f"{side}-{kind}-{r}"
                                one = _requests(session, base, run, kind, config.aggregates, tag)
                                measured = await drive(side, per_round, config.in_flight, one)
                                results.setdefault(kind, {}).setdefault(side, []).append(measured)
        finally:
            await nc.close()
    out: dict[str, Any] = {"benchmark": "gateway", "in_flight": config.in_flight}
    for kind, sides in results.items():
        baseline, ours = merge("baseline", sides["baseline"]), merge("runtime", sides["gateway"])
        ratio = ours.per_second / baseline.per_second if baseline.per_second else 0.0
        out[kind] = {
            "benchmark": f"gateway {kind}",
            "baseline": baseline.summary(),
            "runtime": ours.summary(),
            "throughput_ratio": round(ratio, 3),
        }
    return out

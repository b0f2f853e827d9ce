"""``cqrs bench projections``, "rebuild beside live": deploying version 2 of a projection while
version 1 answers queries.

Three processes besides the benchmark's own, as a deployment has them: version 1 of ``orders``
(a ``cqrs projector``), a query load of ``get_order_by_id`` with ``in_flight`` requests
outstanding (a process of its own, so it competes for the CPU as clients elsewhere would not),
and version 2 (another ``cqrs projector``), started once the load runs. Measured:

- **Catch-up beside live**: version 2's catch-up rate while version 1 answers the load, as a
  ratio to the same catch-up with nothing else running. Both rates come from version 2's own
  log: the commits it had applied when it caught up, over the time from its consumer's
  creation to then.
- **Availability during the switch**: every query of the load from before version 2 starts
  until after it has taken over and then stopped again (the rollback): answered, not found
  (every id asked exists), no responders, other errors, and answers from a model behind one an
  earlier answer showed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import nats
import nats.errors
import orjson
from nats.aio.client import Client as NATS

from ..read.board import read_board
from ..read.retire import retire
from .common import wait_for_responders

V1_APP = "aggregates:AGGREGATES,projections:orders"
V2_APP = "aggregates:AGGREGATES,runtime.bench.switch:ORDERS_V2"
SUBJECT = "query.orders.get_order_by_id"


@functools.cache
def orders_v2(wrap: Callable[[Any], Any] = lambda handler: handler) -> Any:
    """Version 2 of the example ``orders`` projection: the same handlers (each passed through
    ``wrap``) and queries (user code: imported only when benchmarking)."""
    from aggregates.order import order
    from projections.orders import (
        OrdersModel,
        cancelled,
        created,
        get_order_by_id,
        get_orders_for_user,
        status_updated,
    )
    from runtime import Projection

    v2 = Projection("orders", OrdersModel, follows=[order], version=2)
    v2.on("order.created.v2")(wrap(created))
    v2.on("order.status_updated.v1")(wrap(status_updated))
    v2.on("order.cancelled.v1")(wrap(cancelled))
    v2.query("get_order_by_id")(get_order_by_id)
    v2.query("get_orders_for_user")(get_orders_for_user)
    return v2


def __getattr__(name: str) -> Any:
    if name == "ORDERS_V2":  # what V2_APP names, built on first use
        return orders_v2()
    raise AttributeError(name)


# -- the processes ----------------------------------------------------------------------------


def _cqrs() -> str:
    return str(Path(sys.executable).parent / "cqrs")


@contextlib.contextmanager
def projector(url: str, app: str, replica: str, directory: Path) -> Iterator[Path]:
    """A ``cqrs projector`` of ``orders`` without snapshots (each run replays from the first
    event); yields its JSON log's path; stops it with SIGTERM (SIGKILL after 30 s)."""
    log = directory / f"{replica}.log"
    env = {
        **os.environ,
        "NATS_URL": url,
        "CQRS_APP": app,
        "CQRS_LOG_FORMAT": "json",
        "CQRS_STATE_DIR": str(directory / "state"),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    args = ["--projections", "orders", "--replica", replica]
    args += ["--snapshot-every", "0", "--snapshot-interval", "0"]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [_cqrs(), "projector", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        yield log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            event = orjson.loads(line)
            if isinstance(event, dict):
                out.append(event)
    return out


async def caught_up(log: Path, timeout: float = 3_600.0) -> tuple[int, float]:
    """(commits applied, seconds) from a replica's consumer creation to its catching up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = _events(log)
        done = [e for e in events if e.get("event") == "replica_caught_up"]
        begun = [e for e in events if e.get("event") in ("consumer_created", "consumer_recreated")]
        if done and begun:
            started = datetime.fromisoformat(begun[0]["timestamp"])
            ended = datetime.fromisoformat(done[0]["timestamp"])
            return int(done[0]["position"]), (ended - started).total_seconds()
        await anyio.sleep(0.05)
    raise TimeoutError(f"no replica_caught_up in {log} after {timeout}s")


async def serving(nc: NATS, versions: set[int], timeout: float = 120.0) -> None:
    """Return once exactly ``versions`` of ``orders`` take queries, as the board says."""
    for _ in range(int(timeout / 0.05)):
        states = await read_board(nc)
        now = {s["version"] for s in states if s["projection"] == "orders" and s["serving"]}
        if now == versions:
            return
        await anyio.sleep(0.05)
    raise TimeoutError(f"versions {versions} did not serve alone within {timeout}s")


# -- the query load ---------------------------------------------------------------------------


def _load_main(url: str, ids: list[str], in_flight: int, stop: Any, results: Any) -> None:
    results.put(asyncio.run(_load(url, ids, in_flight, stop)))


async def _load(url: str, ids: list[str], in_flight: int, stop: Any) -> dict[str, Any]:
    nc = await nats.connect(url)
    outcomes: Counter[str] = Counter()
    versions: Counter[int] = Counter()
    highest = 0
    bodies = [orjson.dumps({"order_id": i}) for i in ids]

    async def lane(n: int) -> None:
        nonlocal highest
        i = n
        while not stop.is_set():
            floor = highest
            i += in_flight
            try:
                reply = await nc.request(SUBJECT, bodies[i % len(bodies)], timeout=10)
            except nats.errors.NoRespondersError:
                outcomes["no_responders"] += 1
                continue
            except nats.errors.TimeoutError:
                outcomes["timeout"] += 1
                continue
            body = orjson.loads(reply.data)
            if "result" not in body:
                outcomes[str(body.get("error", {}).get("code", "error"))] += 1
                continue
            outcomes["answered"] += 1
            versions[int(body.get("version", 0))] += 1
            if body["seq"] < floor:
                outcomes["behind"] += 1
            highest = max(highest, body["seq"])

    try:
        await asyncio.gather(*(lane(n) for n in range(in_flight)))
    finally:
        await nc.close()
    return {"outcomes": dict(outcomes), "versions": {str(k): v for k, v in versions.items()}}


# -- the measurement --------------------------------------------------------------------------


async def rebuild_beside_live(
    url: str, events: int, in_flight: int, say: Any, run: str
) -> dict[str, Any]:
    """Catch-up of version 2 alone, then beside version 1 under load, and the switch."""
    nc = await nats.connect(url)
    try:
        with tempfile.TemporaryDirectory(prefix="cqrs-bench-switch-") as tmp:
            directory = Path(tmp)
            with projector(url, V2_APP, f"bench-{run}-alone", directory) as log:
                alone = await caught_up(log)
            await retire(nc, "orders", 2)  # the next run replays from the first event too
            say(f"version 2 alone: {alone[0] / alone[1]:,.0f} commits/s")
            ids = [f"o-{random.randrange(events // 4)}" for _ in range(10_000)]
            context = multiprocessing.get_context("spawn")
            stop, results = context.Event(), context.Queue()
            with projector(url, V1_APP, f"bench-{run}-v1", directory) as log:
                await caught_up(log)
                await wait_for_responders(nc, SUBJECT, orjson.dumps({"order_id": ids[0]}))
                load = context.Process(target=_load_main, args=(url, ids, in_flight, stop, results))
                load.start()
                try:
                    with projector(url, V2_APP, f"bench-{run}-new", directory) as log:
                        beside = await caught_up(log)
                        await serving(nc, {2})
                        say(f"version 2 beside live: {beside[0] / beside[1]:,.0f} commits/s")
                        await anyio.sleep(1.0)  # answers from version 2 alone
                    await serving(nc, {1})  # the rollback
                    await anyio.sleep(1.0)
                finally:
                    stop.set()
                    load_result = await anyio.to_thread.run_sync(results.get)
                    load.join()
            with contextlib.suppress(Exception):
                await retire(nc, "orders", 2)
                await retire(nc, "orders", 1)
    finally:
        await nc.close()
    outcomes = load_result["outcomes"]
    total = sum(outcomes.values()) - outcomes.get("behind", 0)
    answered = outcomes.get("answered", 0) - outcomes.get("behind", 0)
    alone_rate, beside_rate = alone[0] / alone[1], beside[0] / beside[1]
    return {
        "alone_per_second": round(alone_rate, 1),
        "beside_live_per_second": round(beside_rate, 1),
        "ratio": round(beside_rate / alone_rate, 3),
        "in_flight": in_flight,
        "queries": total,
        "outcomes": outcomes,
        "versions": load_result["versions"],
        "availability": round(answered / total, 6) if total else 0.0,
    }

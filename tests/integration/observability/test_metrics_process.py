"""``cqrs worker`` and ``cqrs projector`` with ``--metrics-port``: exact counters, the replica
gauges, and ``/readyz`` following NATS and the replica's health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from runtime import Client, CqrsError
from runtime.transport.embedded import EmbeddedServer
from tests.ports import free_port

from ..procs import TEST_APP, WorkerProcess, wait_until, workers
from .support import POISON, http_get, scrape, value

APP = f"{TEST_APP},tests.integration.observability.support:fragile"
PROJECTOR_ARGS = ["--projections", "fragile", "--replica", "m1", "--snapshot-every", "0"]


def process(tmp: Path, url: str, command: str, port: int, *args: str) -> WorkerProcess:
    return WorkerProcess(
        tmp / command,
        url,
        user=None,
        command=command,
        app=APP,
        extra=[*args, "--metrics-port", str(port)],
    )


@pytest.fixture
async def client(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    await nats_server.wait_ready()
    connection: NATS = await nats.connect(nats_server.url)
    try:
        yield Client(connection, timeout=15)
    finally:
        await connection.close()


async def outcome(client: Client, *args: object) -> str:
    try:
        result = await client.send(*args)  # type: ignore[arg-type]
    except CqrsError as exc:
        return exc.code
    return "ok" if result.events else "noop"


async def query_outcome(client: Client, query: str, args: dict[str, object], seq: int) -> str:
    try:
        await client.query("fragile", query, args, min_seq=seq)
    except CqrsError as exc:
        return exc.code
    return "ok"


async def test_counters_are_exact_for_a_known_mix(
    tmp_path: Path, nats_server: EmbeddedServer, client: Client
) -> None:
    """N commands and queries of each outcome give exactly N increments with the right labels."""
    wport, pport = free_port(), free_port()
    worker = process(tmp_path, nats_server.url, "worker", wport)
    projector = process(tmp_path, nats_server.url, "projector", pport, *PROJECTOR_ARGS)
    with workers(worker, projector):
        await worker.wait_ready()
        await projector.wait_ready()
        sent = [
            *[("counter", "c-1", "add", {"amount": 1}) for _ in range(3)],
            *[("counter", "c-1", "add", {"copies": 0}) for _ in range(2)],
            *[("counter", "c-1", "add", {"amount": -1}) for _ in range(2)],
            ("counter", "c-1", "add", {"amount": "many"}),
            ("counter", "c-1", "explode", {}),
        ]
        outcomes = [await outcome(client, *command) for command in sent]
        assert outcomes == [
            *["ok"] * 3,
            *["noop"] * 2,
            *["rejected"] * 2,
            "invalid",
            "unknown_command",
        ]
        seq = (await client.send("counter", "c-2", "add", {"amount": 5})).seq
        asked = [
            await query_outcome(client, "total", {"id": "c-1"}, seq),
            await query_outcome(client, "total", {"id": "c-2"}, seq),
            await query_outcome(client, "total", {"id": "nobody"}, seq),
            await query_outcome(client, "total", {"wrong": 1}, seq),
            await query_outcome(client, "sum", {}, seq),
        ]
        assert asked == ["ok", "ok", "not_found", "invalid", "unknown_query"]

        commands = await scrape(wport)
        counted = "cqrs_commands_total"
        assert value(commands, counted, aggregate="counter", command="add", outcome="ok") == 4
        assert value(commands, counted, aggregate="counter", command="add", outcome="noop") == 2
        assert value(commands, counted, aggregate="counter", command="add", outcome="rejected") == 2
        assert value(commands, counted, aggregate="counter", command="add", outcome="invalid") == 1
        assert (
            value(
                commands,
                counted,
                aggregate="counter",
                command="_unknown",
                outcome="unknown_command",
            )
            == 1
        )
        timed = "cqrs_command_duration_seconds_count"
        assert value(commands, timed, aggregate="counter", command="add") == 9
        assert value(commands, "cqrs_live_actors", aggregate="counter") == 2
        assert value(commands, "cqrs_occ_conflicts_total", aggregate="counter") == 0
        assert value(commands, "cqrs_mailbox_full_total", aggregate="counter") == 0
        # One worker owns every partition of every aggregate type it serves.
        partitions = value(commands, "cqrs_partitions", aggregate="counter")
        assert partitions and value(commands, "cqrs_owned_partitions", aggregate="counter") == (
            partitions
        )
        assert value(commands, "cqrs_partition_handoffs_total") == 0

        queries = await scrape(pport)
        asked_total = "cqrs_queries_total"
        assert value(queries, asked_total, projection="fragile", query="total", outcome="ok") == 2
        assert (
            value(queries, asked_total, projection="fragile", query="total", outcome="not_found")
            == 1
        )
        assert (
            value(queries, asked_total, projection="fragile", query="total", outcome="invalid") == 1
        )
        assert (
            value(
                queries,
                asked_total,
                projection="fragile",
                query="_unknown",
                outcome="unknown_query",
            )
            == 1
        )
        assert (
            value(queries, "cqrs_query_duration_seconds_count", projection="fragile", query="total")
            == 4
        )


async def test_lag_and_halted_gauges_move_when_a_replica_halts(
    tmp_path: Path, nats_server: EmbeddedServer, client: Client
) -> None:
    """A replica caught up reports lag 0 and serving 1; halted on a poison event it reports
    halted 1, a lag that grows with every later commit, and /readyz answers 503."""
    wport, pport = free_port(), free_port()
    worker = process(tmp_path, nats_server.url, "worker", wport)
    projector = process(tmp_path, nats_server.url, "projector", pport, *PROJECTOR_ARGS)
    replica = {"projection": "fragile", "replica": "m1"}
    with workers(worker, projector):
        await worker.wait_ready()
        await projector.wait_ready()
        seq = 0
        for i in range(3):
            seq = (await client.send("counter", f"g-{i}", "add", {"amount": 1})).seq

        async def gauges(applied: float, lag: float, halted: float) -> bool:
            series = await scrape(pport)
            return (
                value(series, "cqrs_projection_applied_sequence", **replica),
                value(series, "cqrs_projection_lag_events", **replica),
                value(series, "cqrs_projection_halted", **replica),
            ) == (applied, lag, halted)

        await wait_until(lambda: gauges(seq, 0, 0), 30, "the replica to catch up")
        assert (await http_get(pport, "/readyz"))[0] == 200
        series = await scrape(pport)
        assert value(series, "cqrs_projection_serving", **replica, version="1") == 1

        poison = (await client.send("counter", "g-0", "add", {"note": POISON})).seq
        await wait_until(lambda: gauges(poison - 1, 1, 1), 30, "the replica to halt")
        for i in range(4):
            await client.send("counter", f"g-{i}", "add", {"amount": 1})
        await wait_until(lambda: gauges(poison - 1, 5, 1), 30, "the lag to grow")
        status, body = await http_get(pport, "/readyz")
        assert status == 503 and b"halted" in body
        assert (await http_get(pport, "/healthz"))[0] == 200


async def test_readyz_follows_the_nats_connection(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """/readyz is 200 while connected, 503 while NATS is away and 200 again once it is back."""
    await nats_server.wait_ready()
    port = free_port()
    worker = process(tmp_path, nats_server.url, "worker", port)

    async def ready_status(expected: int) -> bool:
        return (await http_get(port, "/readyz"))[0] == expected

    with workers(worker):
        await worker.wait_ready()
        await wait_until(lambda: ready_status(200), 10, "the worker to be ready")
        nats_server.stop()
        await wait_until(lambda: ready_status(503), 30, "/readyz to fail without NATS")
        assert (await http_get(port, "/healthz"))[0] == 200
        nats_server.start()
        await nats_server.wait_ready()
        await wait_until(lambda: ready_status(200), 30, "/readyz to recover with NATS")

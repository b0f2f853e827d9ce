"""Long-running processes and NATS: bounded first connect, reconnects, and exit when it is gone."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest

from runtime import Client, ConnectOptions, NoResponders, Unreachable
from runtime.transport.connection import open_connection
from runtime.transport.embedded import EmbeddedServer
from runtime.transport.lifeline import lifeline_of, wait_closed
from tests.ports import free_port

from ..procs import WorkerProcess, wait_until, workers


async def test_a_worker_at_a_closed_port_gives_up_with_one_line(tmp_path: Path) -> None:
    """`cqrs worker` pointed at a closed port exits 69 within its connect timeout, with one
    line naming the URL and why, and no traceback."""
    url = f"nats://127.0.0.1:{free_port()}"
    worker = WorkerProcess(tmp_path, url, user=None, extra=("--connect-timeout", "1"))
    with workers(worker):
        assert await worker.wait_exit(30) == 69
    output = worker.log.read_text()
    errors = [line for line in output.splitlines() if not line.startswith("{")]
    assert errors == [errors[0]] and errors[0].startswith("error (unreachable): ")
    assert url in errors[0] and "refused" in errors[0].lower()
    assert "Traceback" not in output


async def test_sigterm_while_connecting_ends_a_worker_at_once(tmp_path: Path) -> None:
    """A worker still trying to reach NATS (a 120 s connect timeout) stops promptly on
    SIGTERM, without waiting for the timeout."""
    url = f"nats://127.0.0.1:{free_port()}"
    worker = WorkerProcess(tmp_path, url, user=None, extra=("--connect-timeout", "120"))
    with workers(worker):
        await wait_until(
            lambda: any(e["event"] == "nats_connecting" for e in worker.log_events()),
            30,
            "the worker to start connecting",
        )
        worker.signal(signal.SIGTERM)
        assert await worker.wait_exit(15) == 0
    assert "Traceback" not in worker.log.read_text()


async def test_a_worker_whose_server_is_gone_for_good_exits_non_zero(tmp_path: Path) -> None:
    """When the server stops and the reconnect attempts run out, the worker logs one line per
    attempt (no traceback), withdraws its ready file and exits 69 for its supervisor."""
    server = EmbeddedServer(tmp_path / "jetstream", port=free_port())
    server.start()
    try:
        await server.wait_ready()
        worker = WorkerProcess(
            tmp_path / "worker", server.url, user=None, extra=("--max-reconnects", "2")
        )
        with workers(worker):
            await worker.wait_ready()
            server.stop()
            assert await worker.wait_exit(60) == 69
    finally:
        server.kill()
    assert not worker.ready_file.exists()
    events = [e["event"] for e in worker.log_events()]
    attempts = [e for e in worker.log_events() if e["event"] == "nats_reconnecting"]
    assert "nats_disconnected" in events and "nats_connection_closed" in events
    assert [a["attempt"] for a in attempts] == [1, 2, 3]  # 2 allowed reconnects per server
    assert [a["wait"] for a in attempts] == sorted(a["wait"] for a in attempts)  # backing off
    output = worker.log.read_text()
    assert "Traceback" not in output and "error (connection_closed): " in output


async def test_a_worker_rides_out_a_server_restart(tmp_path: Path) -> None:
    """A server that comes back on the same port is reconnected to; the worker keeps serving."""
    server = EmbeddedServer(tmp_path / "jetstream", port=free_port())
    server.start()
    try:
        await server.wait_ready()
        worker = WorkerProcess(tmp_path / "worker", server.url, user=None)
        with workers(worker):
            await worker.wait_ready()
            server.stop()
            await wait_until(
                lambda: any(e["event"] == "nats_reconnecting" for e in worker.log_events()),
                30,
                "a reconnect attempt",
            )
            server.start()
            await wait_until(
                lambda: any(e["event"] == "nats_reconnected" for e in worker.log_events()),
                30,
                "the worker to reconnect",
            )
            assert worker.process is not None and worker.process.poll() is None
            assert worker.ready_file.exists()
    finally:
        server.kill()


async def test_client_connect_gives_up_after_its_connect_timeout() -> None:
    """Client.connect to a closed port raises Unreachable naming the URL once its connect
    timeout has passed, instead of retrying forever."""
    url = f"nats://127.0.0.1:{free_port()}"
    with anyio.fail_after(20), pytest.raises(Unreachable, match=f"cannot connect to NATS at {url}"):
        async with Client.connect(url, options=ConnectOptions(connect_timeout=1)):
            pass


async def test_client_connect_serves_commands(nats_server: EmbeddedServer) -> None:
    """Client.connect yields a client on a connection of its own, closed on exit."""
    await nats_server.wait_ready()
    async with Client.connect(nats_server.url) as client:
        assert client.nc.is_connected
        with pytest.raises(NoResponders):
            await client.send("user", "u-1", "create", {})
    assert client.nc.is_closed


async def test_a_connection_the_server_closes_is_reported_closed_with_its_cause(
    nats_server: EmbeddedServer,
) -> None:
    """A publish whose headers push it over max_payload makes the server close the connection
    for good; the lifeline reports it closed, naming the server's reason."""
    await nats_server.wait_ready()
    nc = await open_connection(nats_server.url, ConnectOptions())
    try:
        payload = b"x" * (nc.max_payload - 100)  # nats-py checks the body only, not headers
        await nc.publish("anything", payload, headers={"Big": "y" * 1000})
        with anyio.fail_after(10):
            await wait_closed(nc)
        lifeline = lifeline_of(nc)
        assert lifeline is not None and "payload" in (lifeline.last_error or "").lower()
    finally:
        await nc.close()

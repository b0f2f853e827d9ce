"""Ctrl-C to the process group of each long-running command, as a terminal sends it: a clean
exit 0 with no warning or error line, and what the process held on the server released."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client as NATS

from runtime.domain.app import DEFAULT_APP
from runtime.transport.embedded import EmbeddedServer
from tests.ports import free_port

from ..cli.clirun import nats_servers_using
from ..held import Markers, claims, complaints, every_partition, lease_keys
from ..procs import WorkerProcess, wait_until, workers


async def serving(process: WorkerProcess, port: int) -> None:
    """Wait until the process serves: its ready file, or the gateway's /healthz."""
    if process.command != "gateway":
        await process.wait_ready()
        return
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

        async def healthy() -> bool:
            try:
                return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(healthy, 30, "the gateway to answer /healthz", period=0.2)


@pytest.mark.parametrize("command", ["worker", "projector", "processes", "gateway"])
async def test_ctrl_c_to_the_group_stops_it_cleanly_and_releases_what_it_held(
    nats_server: EmbeddedServer, nc: NATS, tmp_path: Path, command: str
) -> None:
    """Ctrl-C to the group of `cqrs <command>` on an external server: exit 0, no warning or
    error logged, its partition leases and replica claims released there."""
    markers = Markers()
    await markers.watch(nc)
    port = free_port()
    extra = ["--port", str(port)] if command == "gateway" else []
    process = WorkerProcess(
        tmp_path / command, nats_server.url, user=None, command=command, app=DEFAULT_APP
    )
    process.extra = extra
    with workers(process):
        await serving(process, port)
        claimed = await claims(nc) if command == "projector" else set()
        process.signal_group(signal.SIGINT)
        assert await process.wait_exit(60) == 0, process.log_tail()
    assert complaints(process.log.read_text().splitlines()) == []
    if command == "worker":
        held, released = await lease_keys(nc)
        assert held == set() and every_partition() <= released
    if command == "projector":
        assert claimed
        await wait_until(lambda: claimed <= markers.deleted, 10, "the claims' markers")


@pytest.mark.parametrize("command", ["worker", "projector", "processes"])
async def test_ctrl_c_to_a_process_on_its_own_embedded_server_stops_the_server_last(
    tmp_path: Path, command: str
) -> None:
    """`cqrs <command>` without a URL starts the embedded server; Ctrl-C to its group stops
    it with exit 0, no warning or error, and no nats-server left."""
    process = WorkerProcess(tmp_path / command, url="", user=None, command=command, app=DEFAULT_APP)
    with workers(process):
        await process.wait_ready()
        assert len(nats_servers_using(tmp_path)) == 1
        process.signal_group(signal.SIGINT)
        assert await process.wait_exit(60) == 0, process.log_tail()
    assert complaints(process.log.read_text().splitlines()) == []
    assert nats_servers_using(tmp_path) == []

"""The `cqrs gateway` process: it drains on SIGTERM and says so clearly when its port is taken."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx

from runtime.cli import exits
from runtime.transport.embedded import EmbeddedServer
from tests.ports import free_port

from ..procs import WorkerProcess, wait_until, workers


def gateway(directory: Path, url: str, port: int) -> WorkerProcess:
    return WorkerProcess(directory, url, user=None, command="gateway", extra=["--port", str(port)])


async def test_sigterm_drains_the_gateway_and_exits_0(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """A serving gateway stops on SIGTERM and exits 0."""
    await nats_server.wait_ready()
    port = free_port()
    with workers(gateway(tmp_path, nats_server.url, port)) as (process,):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def healthy() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(healthy, 30, "the gateway to answer /healthz", period=0.2)
        process.signal(signal.SIGTERM)
        assert await process.wait_exit(30) == 0, process.log_tail()


async def test_a_taken_port_is_a_clear_error(tmp_path: Path, nats_server: EmbeddedServer) -> None:
    """A gateway whose port is in use exits 69 (unavailable) naming the port, no traceback."""
    await nats_server.wait_ready()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with workers(gateway(tmp_path, nats_server.url, port)) as (process,):
            assert await process.wait_exit(30) == exits.UNAVAILABLE
    log = process.log_tail()
    assert f"cannot listen on 127.0.0.1:{port}" in log and "Traceback" not in log

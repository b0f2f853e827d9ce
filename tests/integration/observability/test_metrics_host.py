"""Where the metrics endpoints listen: the loopback interface unless ``--metrics-host``
(``CQRS_METRICS_HOST``) names another, as the container image does."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio

from runtime.transport.embedded import EmbeddedServer
from tests.ports import free_port

from ..cli.clirun import running_dev
from ..procs import WorkerProcess, wait_until, workers
from .support import http_get

ELSEWHERE = "127.0.0.2"  # another address of this host: reached only by a wildcard bind


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5):
            return True
    except ConnectionRefusedError:
        return False


async def test_dev_serves_its_metrics_on_loopback_only(tmp_path: Path) -> None:
    """`cqrs dev --metrics-port` answers on 127.0.0.1 and on no other address."""
    port = free_port()
    with running_dev(tmp_path, "--metrics-port", str(port)):
        status, _ = await http_get(port, "/healthz")
        assert status == 200
        assert not await anyio.to_thread.run_sync(answers, ELSEWHERE, port)


async def test_a_worker_serves_its_metrics_on_the_interface_it_is_given(
    nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    """`cqrs worker` with CQRS_METRICS_HOST=0.0.0.0 answers on every address of the host and
    logs where it listens."""
    port = free_port()
    worker = WorkerProcess(
        tmp_path / "worker",
        nats_server.url,
        user=None,
        extra=["--metrics-port", str(port)],
        env={"CQRS_METRICS_HOST": "0.0.0.0"},
    )
    with workers(worker):
        await worker.wait_ready()
        await wait_until(lambda: answers(ELSEWHERE, port), 10, "the metrics port")
        assert '"host": "0.0.0.0"' in worker.log.read_text()

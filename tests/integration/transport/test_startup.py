"""Processes started before JetStream can answer wait for it, within their start-up deadline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from runtime import Client, ConnectOptions, Stale
from runtime.cli import exits
from runtime.domain.app import load_app
from runtime.ops.permissions import UserPlan
from runtime.transport.connection import open_connection
from tests.ports import free_port

from ..procs import READ_APP, NatsNode, WorkerProcess, cluster_nodes, password, wait_until
from ..procs import workers as worker_processes

# Every kind of long-running process, with an app that gives each something to run.
EVERYTHING = f"{READ_APP},tests.integration.support:echo,aggregates:PROCESS_MANAGERS"
APP = load_app(EVERYTHING)
PLAN = UserPlan()


def waiting_for_jetstream(procs: Sequence[WorkerProcess]) -> bool:
    """Whether every one of ``procs`` has logged that it waits for JetStream (none has exited)."""
    for proc in procs:
        assert proc.process is not None
        if proc.process.poll() is not None:
            raise RuntimeError(f"cqrs {proc.command} exited early: {proc.log_tail()}")
    return all('"jetstream_waiting"' in proc.log.read_text() for proc in procs)


async def test_processes_started_before_the_cluster_forms_serve_once_it_has(
    tmp_path: Path,
) -> None:
    """A worker, a projector and a process manager replica started while one node of three runs
    (no meta leader) wait for JetStream, then serve once the other two nodes have joined."""
    nodes = cluster_nodes(tmp_path / "cluster", APP, PLAN)
    first, *rest = nodes
    url = ",".join(node.url for node in nodes)
    # A deadline well past the default, so that a slow election on a busy machine is waited out.
    patient = ("--replicas", "3", "--startup-timeout", "120")
    worker = WorkerProcess(tmp_path / "w1", url, extra=patient)
    projector = WorkerProcess(
        tmp_path / "p1",
        url,
        user="projector",
        command="projector",
        app=READ_APP,
        extra=("--projections", "counters", "--replica", "p1", *patient),
    )
    managers = WorkerProcess(
        tmp_path / "m1", url, user="processes", command="processes", app=EVERYTHING, extra=patient
    )
    try:
        first.start()
        await first.wait_listening()
        with worker_processes(worker, projector, managers) as procs:
            await wait_until(lambda: waiting_for_jetstream(procs), 60, "all to wait for JetStream")
            for node in rest:
                node.start()
            for proc in procs:
                await proc.wait_ready(timeout=120)
            nc = await open_connection(
                url, ConnectOptions(user="client", password=password("client"), name="test")
            )
            try:
                client = Client(nc)
                result = await client.send("counter", "c-1", "add", {"amount": 2}, timeout=10)

                async def counted() -> bool:
                    try:  # a projector still catching up answers `stale`: ask again
                        answer = await client.query("counters", "totals", min_seq=result)
                    except Stale:
                        return False
                    assert answer.result == {"c-1": 2}
                    return True

                await wait_until(counted, 60, "the projector to answer with the command applied")
            finally:
                await nc.close()
    finally:
        for node in nodes:
            node.kill()


@pytest.mark.parametrize("command", ["worker", "projector", "processes", "dev"])
async def test_a_process_gives_up_on_a_server_without_jetstream_after_its_startup_timeout(
    tmp_path: Path, command: str
) -> None:
    """Against a server without JetStream, a process with a short --startup-timeout logs that it
    waits, then exits 78 with the clear message asking whether JetStream is enabled."""
    port = free_port()
    config = tmp_path / "nats.conf"
    config.write_text(f"listen: 127.0.0.1:{port}\n")
    server = NatsNode("plain", tmp_path, config, {}, port)
    server.start()
    try:
        await server.wait_listening()
        proc = WorkerProcess(
            tmp_path / command,
            server.url,
            user=None,
            command=command,
            app=EVERYTHING,
            # `cqrs dev` uses the server NATS_URL names; its gateway must not take a busy port.
            extra=(
                "--startup-timeout",
                "2",
                *(("--gateway-port", "0") if command == "dev" else ()),
            ),
        )
        with worker_processes(proc):
            code = await proc.wait_exit(60)
        log = proc.log_tail(20_000)
        assert code == exits.CONFIG, log
        assert '"jetstream_waiting"' in log
        assert "error (configuration): JetStream did not answer while setting up" in log
        assert "is JetStream enabled?" in log
        assert "Traceback" not in log
    finally:
        server.kill()

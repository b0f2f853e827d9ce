"""Graceful shutdown of ``cqrs worker`` subprocesses under a steady command load."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
from nats.aio.client import Client as NATS

from runtime import Client
from runtime.transport.embedded import EmbeddedServer

from ..load import CommandLoad, assert_exactly_once
from ..procs import WorkerProcess, wait_until, workers


async def test_sigterm_to_one_of_two_workers_loses_no_command(
    nats_server: EmbeddedServer, nc: NATS, tmp_path: Path
) -> None:
    """SIGTERM to one of two workers under load: every command is answered, it exits 0."""
    with workers(
        WorkerProcess(tmp_path / "a", nats_server.url, user=None),
        WorkerProcess(tmp_path / "b", nats_server.url, user=None),
    ) as (a, b):
        await a.wait_ready()
        await b.wait_ready()
        load = CommandLoad(Client(nc), retry=False, timeout=10.0)
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(load.run, stop)
            await wait_until(lambda: len(load.acked) >= 200, 30, "the load to get going")
            a.signal(signal.SIGTERM)
            await wait_until(lambda: not a.ready_file.exists(), 10, "a to withdraw readiness")
            code = await a.wait_exit(20)
            after = len(load.acked)
            await wait_until(lambda: len(load.acked) >= after + 200, 30, "b to take the load")
            stop.set()
        assert code == 0, a.log_tail()
        assert '"shutdown_complete"' in a.log.read_text()
        assert not load.refused, f"commands failed: {load.refused[:5]} {load.errors}"
        await assert_exactly_once(nc, set(load.acked))


async def test_sigint_to_the_only_worker_answers_every_command_it_took(
    nats_server: EmbeddedServer, nc: NATS, tmp_path: Path
) -> None:
    """Ctrl-C to the only worker under load: each command is answered or refused, none lost."""
    with workers(WorkerProcess(tmp_path / "a", nats_server.url, user=None)) as (a,):
        await a.wait_ready()
        load = CommandLoad(Client(nc), retry=False, timeout=10.0)
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(load.run, stop)
            await wait_until(lambda: len(load.acked) >= 200, 30, "the load to get going")
            a.signal(signal.SIGINT)
            code = await a.wait_exit(20)
            stop.set()
        assert code == 0, a.log_tail()
        # A request that reached the worker was answered; later ones found nobody listening.
        # A timeout would be a command taken and then dropped.
        assert set(load.errors) <= {"no_responders"}, load.errors
        await assert_exactly_once(nc, set(load.acked))

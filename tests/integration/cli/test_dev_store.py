"""The development store: one server per state directory, joined or refused, never doubled."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from ..procs import WorkerProcess, workers
from .clirun import nats_servers_using, run_cli, running_dev


@pytest.mark.parametrize(
    "command",
    [
        ("events", "user", "u-1"),
        ("status",),
        ("query", "users", "get_user_by_id", '{"user_id": "u-1"}'),
    ],
    ids=["events", "status", "query"],
)
def test_read_only_commands_never_start_a_server(tmp_path: Path, command: tuple[str, ...]) -> None:
    """events, status and query without a server say none is running (exit 68), start none."""
    result = run_cli(*command, cwd=tmp_path, timeout=60)
    assert result.returncode == 68, result.stderr
    assert result.stderr.count("\n") == 1 and "no NATS server is running" in result.stderr
    assert nats_servers_using(tmp_path) == []
    assert not (tmp_path / ".cqrs" / "jetstream").exists()


async def test_a_second_dev_is_refused_and_a_worker_joins_the_running_one(tmp_path: Path) -> None:
    """While `cqrs dev` runs, another dev and a demo on its store are refused (exit 75) and
    a worker without a URL joins its server: one nats-server on the directory throughout."""
    with running_dev(tmp_path):
        second = run_cli("dev", cwd=tmp_path, timeout=60)
        assert second.returncode == 75, second.stderr
        assert "is in use" in second.stderr and str(os.getpid()) not in second.stderr
        demo = run_cli("demo", "--store", ".cqrs", cwd=tmp_path, timeout=60)
        assert demo.returncode == 75 and "is in use" in demo.stderr
        assert len(nats_servers_using(tmp_path)) == 1

        worker = WorkerProcess(
            tmp_path / "worker",
            url="",  # none: the development store's server
            user=None,
            extra=("--aggregates", "user", "--state-dir", str(tmp_path / ".cqrs")),
        )
        with workers(worker):
            await worker.wait_ready()
            assert len(nats_servers_using(tmp_path)) == 1
            worker.signal(signal.SIGTERM)
            assert await worker.wait_exit(30) == 0

"""The CLI as a user runs it: subprocesses on the embedded server."""

from __future__ import annotations

import os
import re
import select
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import orjson
import pytest
from nats.aio.client import Client as NATS

from runtime.transport.embedded import EmbeddedServer

from .clirun import CQRS, ctrl_c, nats_servers_using, run_cli, running_dev


def test_demo_runs_end_to_end_and_leaves_no_server(tmp_path: Path) -> None:
    """`cqrs demo` exits 0 after the whole scenario and stops its embedded nats-server."""
    result = run_cli("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "demo finished" in out
    assert "rejected" in out and "order.cancelled.v1" in out and "user.role_changed.v1" in out
    assert nats_servers_using(tmp_path) == []
    assert not (tmp_path / ".cqrs").exists()  # a fresh temporary store, removed afterwards


@pytest.fixture
def dev_process(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    with running_dev(tmp_path) as process:
        yield process


def test_dev_send_and_events(tmp_path: Path, dev_process: subprocess.Popen[str]) -> None:
    """With `cqrs dev` running, `cqrs send` finds it, `cqrs events` shows the history, and
    Ctrl-C stops dev and its server cleanly."""
    ok = run_cli(
        "send",
        "user",
        "u-1",
        "create",
        '{"name": "Ada", "email": "ada@example.com"}',
        "--command-id",
        "cli-1",
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    reply = orjson.loads(ok.stdout)
    assert (reply["version"], reply["command_id"]) == (1, "cli-1")

    bad = run_cli("send", "user", "u-1", "change_role", '{"role": "root"}', cwd=tmp_path)
    assert bad.returncode == 65
    assert bad.stderr.startswith("error (invalid): ") and bad.stderr.count("\n") == 1

    rejected = run_cli(
        "send", "user", "u-1", "create", '{"name": "B", "email": "b@example.com"}', cwd=tmp_path
    )
    assert rejected.returncode == 1 and "rejected" in rejected.stderr

    as_json = run_cli("send", "user", "u-1", "create", "{nope", "--json", cwd=tmp_path)
    assert as_json.returncode == 65 and "invalid" in as_json.stderr
    assert orjson.loads(as_json.stdout)["error"]["code"] == "invalid"

    run_cli("send", "user", "u-1", "change_role", '{"role": "support"}', cwd=tmp_path)
    events = run_cli("events", "user", "u-1", "--json", cwd=tmp_path)
    assert events.returncode == 0, events.stderr
    lines = [orjson.loads(line) for line in events.stdout.splitlines()]  # JSON Lines
    assert [(e["version"], e["type"]) for e in lines] == [
        (1, "user.created.v1"),
        (2, "user.role_changed.v1"),
    ]

    gateway = dev_process.ready["http"]  # type: ignore[attr-defined]
    user = httpx.get(f"{gateway}/queries/users/get_user_by_id", params={"user_id": "u-1"})
    assert user.status_code in (200, 404), user.text  # the read model may lag a moment
    assert httpx.get(f"{gateway}/readyz").status_code == 200

    ctrl_c(dev_process)
    assert dev_process.wait(30) == 0
    assert nats_servers_using(tmp_path) == []


def test_send_without_a_server_says_how_to_start_one(tmp_path: Path) -> None:
    """`cqrs send` with no server configured or running explains what to do."""
    result = run_cli("send", "user", "u-1", "create", "{}", cwd=tmp_path)
    assert result.returncode == 68
    assert "cqrs dev" in result.stderr


def test_a_killed_dev_process_takes_its_server_along(
    tmp_path: Path, dev_process: subprocess.Popen[str]
) -> None:
    """Even `kill -9` of `cqrs dev` leaves no nats-server behind (it dies with its parent)."""
    servers = nats_servers_using(tmp_path)
    assert len(servers) == 1
    handle = os.pidfd_open(servers[0])
    try:
        dev_process.kill()
        dev_process.wait(30)
        readable, _, _ = select.select([handle], [], [], 30)  # wakes when the server exits
        assert readable, "nats-server outlived its parent"
    finally:
        os.close(handle)
    assert nats_servers_using(tmp_path) == []

    stale = (tmp_path / ".cqrs" / "nats.url").read_text()  # left behind by the killed process
    events = run_cli("events", "user", "u-1", cwd=tmp_path)
    assert events.returncode == 68 and "no NATS server is running" in events.stderr
    assert nats_servers_using(tmp_path) == []
    with running_dev(tmp_path):
        fresh = (tmp_path / ".cqrs" / "nats.url").read_text()
        assert fresh != stale  # the restarted server's own URL
        assert run_cli("events", "user", "u-1", cwd=tmp_path).returncode == 0


async def test_a_timed_out_command_says_how_to_retry_it(
    nc: NATS, nats_server: EmbeddedServer
) -> None:
    """`cqrs send` whose command gets no reply exits 75 and prints its generated command id
    and the command line that retries it safely."""
    await nc.subscribe("cmd.*.user.*.*")  # takes the (partitioned) request, never answers
    await nc.flush()
    env = {**os.environ}
    env.pop("NATS_URL", None)
    done = await anyio.run_process(
        [*CQRS, "send", "user", "u-1", "create", "{}", "--timeout", "0.5"],
        env={**env, "NATS_URL": nats_server.url},
        check=False,
    )
    err = done.stderr.decode()
    assert done.returncode == 75 and err.count("\n") == 1 and err.startswith("error (timeout)")
    command_id = re.search(r"command id (\w+)", err)
    assert command_id is not None
    assert f"cqrs send user u-1 create '{{}}' --command-id {command_id.group(1)}" in err

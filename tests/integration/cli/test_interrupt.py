"""Ctrl-C on `cqrs dev` and `cqrs demo` as a terminal sends it: to the whole foreground process
group, so the embedded nats-server would get it at the same moment as the runtime if it were in
that group. The runtime drains first and stops its server last."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import nats
import orjson
import pytest
from nats.aio.client import Client as NATS

from runtime.transport.embedded import EmbeddedServer
from tests.ports import free_port

from ..held import Markers, claims, complaints, every_partition, lease_keys
from ..procs import wait_until
from .clirun import CQRS, cli_env, ctrl_c, nats_servers_using, run_cli, running_dev

SIGNALS = [signal.SIGINT, signal.SIGTERM]
USER = '{"name": "Ada", "email": "ada@example.com"}'


def stop(process: subprocess.Popen[str], signum: int) -> tuple[int, list[str]]:
    """Signal the group; the exit code and the lines logged after the signal (the wait is a
    deadline for a hung process, not the measure of a quick one)."""
    ctrl_c(process, signum)
    _, rest = process.communicate(timeout=60)
    return process.returncode, rest.splitlines()


@pytest.mark.parametrize(
    "signum", [*SIGNALS, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP (terminal closed)"]
)
async def test_a_signal_to_dev_s_group_drains_it_and_stops_its_server_last(
    tmp_path: Path, signum: int
) -> None:
    """SIGINT, SIGTERM or SIGHUP to `cqrs dev`'s process group: exit 0 with no warning or
    error, no nats-server left, and every partition lease handed over in the store it leaves."""
    with running_dev(tmp_path) as dev:
        assert len(nats_servers_using(tmp_path)) == 1
        sent = run_cli("send", "user", "u-1", "create", USER, cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        code, lines = stop(dev, signum)
    assert code == 0, lines
    assert complaints(lines) == []
    assert any('"shutdown_complete"' in line for line in lines)
    assert nats_servers_using(tmp_path) == []

    server = EmbeddedServer(
        tmp_path / ".cqrs" / "jetstream", port=free_port()
    )  # the store dev left
    server.start()
    try:
        await server.wait_ready()
        nc = await nats.connect(server.url)
        try:
            held, released = await lease_keys(nc)
        finally:
            await nc.close()
    finally:
        server.stop()
    assert held == set()
    assert every_partition() <= released
    assert any(key.startswith("member.") for key in released)  # the worker left, not lapsed


async def test_dev_with_nats_url_says_so_and_releases_all_it_held_there(
    nats_server: EmbeddedServer, nc: NATS, tmp_path: Path
) -> None:
    """With NATS_URL set, `cqrs dev` says it uses that server because of NATS_URL and how to
    get the embedded one; Ctrl-C to its group leaves no lease or replica claim held there."""
    markers = Markers()
    await markers.watch(nc)
    directory = tmp_path / "dev"  # the test's own server runs under tmp_path
    directory.mkdir()
    with running_dev(directory, env={"NATS_URL": nats_server.url}) as dev:
        started: list[str] = dev.started  # type: ignore[attr-defined]
        (line,) = [orjson.loads(s) for s in started if '"dev_server"' in s]
        assert line["server"] == nats_server.url
        assert "NATS_URL" in line["because"] and "NATS_URL=" in line["for_the_embedded_server"]
        assert nats_servers_using(directory) == []  # no embedded server
        claimed = await claims(nc)
        assert claimed  # each projection's replica
        code, lines = stop(dev, signal.SIGINT)
    assert code == 0, lines
    assert complaints(lines) == []
    await nc.flush()
    await wait_until(lambda: claimed <= markers.deleted, 10, "the markers to arrive")
    held, released = await lease_keys(nc)
    assert held == set() and every_partition() <= released


@pytest.mark.parametrize("given_by", ["NATS_URL", "--nats"])
def test_dev_with_an_unreachable_server_says_why_it_tried_it(tmp_path: Path, given_by: str) -> None:
    """With NATS_URL (or --nats) naming no server, `cqrs dev` fails in one line saying it tried
    that server because of NATS_URL (or --nats) and how to run the embedded one instead; it
    starts no server."""
    url = f"nats://127.0.0.1:{free_port()}"
    env = {"NATS_URL": url} if given_by == "NATS_URL" else {}
    args = ["--nats", url] if given_by == "--nats" else []
    result = run_cli("dev", "--connect-timeout", "0.5", *args, cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 69, result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert f"cannot connect to NATS at {url}" in error
    if given_by == "NATS_URL":
        assert "because NATS_URL is set in the environment" in error
        assert "`NATS_URL= cqrs dev`" in error
    else:
        assert "because --nats names it" in error and "leave out --nats" in error
    assert nats_servers_using(tmp_path) == []


@pytest.mark.parametrize("signum", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_demo_s_group_stops_it_cleanly(tmp_path: Path, signum: int) -> None:
    """SIGINT or SIGTERM to `cqrs demo`'s group in the middle of its scenario: it stops, exits
    0 without a warning or error, and leaves neither its nats-server nor its temporary store."""
    process = subprocess.Popen(
        [*CQRS, "demo"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env({"TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}),
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the payment deadline's wait: the scenario is under way
            if "Nobody pays" in line:
                break
        else:
            raise AssertionError(f"cqrs demo exited with {process.wait()}")
        assert len(nats_servers_using(tmp_path)) == 1
        ctrl_c(process, signum)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert err == ""  # warnings and errors only, at the demo's log level
    assert "demo stopped" in out and "demo finished" not in out
    assert nats_servers_using(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("cqrs-demo-")] == []

"""The generated users with default flags: what a role is not granted fails at once, clearly."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import anyio
import httpx
import pytest
from structlog.testing import capture_logs

from aggregates.scenario import run_scenario
from runtime import (
    Client,
    Conflict,
    ConnectOptions,
    PermissionDenied,
    StreamSettings,
    Unauthorized,
)
from runtime.cli import exits
from runtime.domain.app import DEFAULT_APP
from runtime.transport.connection import open_connection
from runtime.transport.nats_errors import nats_call
from runtime.transport.publisher import Publisher
from runtime.transport.streams import ensure_event_stream
from tests.ports import free_port

from ..cli.clirun import run_cli
from ..procs import NatsNode, WorkerProcess, password, wait_until, workers
from .accounts import options, session

USER = {"name": "Ada", "email": "ada@example.com", "role": "customer"}


async def test_a_default_worker_answers_a_reused_command_id_with_conflict(
    node: NatsNode, tmp_path: Path
) -> None:
    """A ``cqrs worker --user worker`` without ``--scoped-reads`` answers the same command id
    sent with another command ``conflict``: refused the stream-wide direct get, it reads the
    commit through a scoped consumer instead, and says so once."""
    worker = WorkerProcess(tmp_path / "worker", node.url, app=DEFAULT_APP, scoped_reads=False)
    with workers(worker):
        await worker.wait_ready()
        nc = await open_connection(node.url, options("alice"))
        try:
            client = Client(nc, timeout=30)
            await client.send("user", "u-1", "create", USER, command_id="k-1")
            for _ in range(2):
                with pytest.raises(Conflict, match="another command"):
                    await client.send(
                        "user", "u-1", "change_email", {"email": "b@example.com"}, command_id="k-1"
                    )
        finally:
            await nc.close()
        entries = worker.log_events()
        switched = [e for e in entries if e["event"] == "history_reads_scoped"]
        assert len(switched) == 1, worker.log_tail()
        assert [e for e in entries if e["event"] == "nats_error"] == []  # reported, not warned
        assert switched[0]["level"] == "info"
        assert "$JS.API.DIRECT.GET.EVENTS" in str(switched[0]["reason"])


async def test_a_default_worker_answers_an_old_retry_with_its_original_reply(
    node: NatsNode, tmp_path: Path
) -> None:
    """A retry after 80 newer commands gets its original reply from a default-flags worker on
    the generated ``worker`` user."""
    worker = WorkerProcess(tmp_path / "worker", node.url, app=DEFAULT_APP, scoped_reads=False)
    with workers(worker):
        await worker.wait_ready()
        nc = await open_connection(node.url, options("alice"))
        try:
            client = Client(nc, timeout=30)
            await client.send("user", "u-1", "create", USER)
            change = {"email": "first@example.com"}
            first = await client.send("user", "u-1", "change_email", change, command_id="r-1")
            for i in range(80):
                await client.send("user", "u-1", "change_email", {"email": f"u{i}@example.com"})
            again = await client.send("user", "u-1", "change_email", change, command_id="r-1")
        finally:
            await nc.close()
    assert (again.seq, again.version, again.events) == (first.seq, first.version, first.events)
    assert again.version == 2


ROLES = {
    # role: (user, a request the generated grant refuses it)
    "client": ("alice", "$JS.API.STREAM.INFO.EVENTS"),
    "gateway": ("gateway", "$JS.API.STREAM.NAMES"),
    "worker": ("worker", "$JS.API.STREAM.DELETE.EVENTS"),
    "projector": ("projector", "$JS.API.STREAM.PURGE.EVENTS"),
    "processes": ("processes", "$JS.API.DIRECT.GET.EVENTS"),
}


@pytest.mark.parametrize("role", sorted(ROLES))
async def test_a_refused_request_of_each_role_fails_at_once(node: NatsNode, role: str) -> None:
    """A request the server refuses a generated role fails with :class:`PermissionDenied`
    naming the subject and the user, instead of waiting out its timeout."""
    user, subject = ROLES[role]
    nc = await open_connection(node.url, options(user))
    try:
        with pytest.raises(PermissionDenied) as refused, nats_call(f"the request to {subject}"):
            await nc.request(subject, b"{}", timeout=600)
    finally:
        await nc.close()
    assert refused.value.code == "internal"
    assert refused.value.details == {"subject": subject, "operation": "publish", "user": user}
    assert f"does not allow user {user!r} to publish to {subject!r}" in refused.value.message


async def test_a_refused_append_fails_at_once(node: NatsNode) -> None:
    """An append to an aggregate the worker user does not serve fails with
    :class:`PermissionDenied` instead of waiting for JetStream's ack."""
    async with session(node, "admin") as admin:
        await ensure_event_stream(admin.nc.jetstream(), StreamSettings())
    nc = await open_connection(node.url, options("user-worker"))
    publisher = Publisher(nc, timeout=600)
    try:
        with pytest.raises(PermissionDenied, match=r"events\.order\.o-1"):
            await publisher.publish("events.order.o-1", b"[]", {})
    finally:
        await publisher.stop()
        await nc.close()


async def test_a_request_whose_reply_inbox_is_refused_fails_at_once(node: NatsNode) -> None:
    """With an inbox prefix the user may not subscribe to (nats-py's shared ``_INBOX``), a
    request fails with :class:`PermissionDenied` naming the refused subscription."""
    wrong = ConnectOptions(user="alice", password=password("alice"), inbox_prefix="_INBOX")
    nc = await open_connection(node.url, wrong)
    try:
        for _ in range(2):  # the first request learns it, the next knows it
            with pytest.raises(PermissionDenied, match="to subscribe to '_inbox"):
                await nc.request("query.orders.get_order_by_id", b"{}", timeout=600)
    finally:
        await nc.close()


async def test_a_cli_command_refused_by_nats_says_so_and_exits_77(
    node: NatsNode, tmp_path: Path
) -> None:
    """``cqrs events`` as a client user (not granted JetStream reads) fails at once, exit 77
    (permission denied), naming the user and the subject."""
    args = ("events", "user", "u-1", "--nats", node.url, "--user", "alice")
    done = await anyio.to_thread.run_sync(
        lambda: run_cli(*args, "--password", password("alice"), cwd=tmp_path)
    )
    assert done.returncode == exits.NO_PERMISSION, done.stderr
    assert "does not allow user 'alice' to publish to '$JS.API.STREAM.INFO.EVENTS'" in done.stderr


async def test_refused_credentials_fail_the_connect_at_once_as_unauthorized(
    node: NatsNode, tmp_path: Path
) -> None:
    """A wrong password, or no user at all, is refused by the server: the connect fails with
    ``Unauthorized`` naming the user, without retrying until its timeout (60 s here), and a CLI
    command exits 77 (permission denied), not 69 (unreachable)."""
    wrong = ConnectOptions(user="alice", password="wrong", connect_timeout=60)
    with anyio.fail_after(30), pytest.raises(Unauthorized, match="refuses user 'alice'"):
        await open_connection(node.url, wrong)
    with anyio.fail_after(30), pytest.raises(Unauthorized, match="without credentials"):
        await open_connection(node.url, ConnectOptions(connect_timeout=60))
    args = ("events", "user", "u-1", "--nats", node.url, "--user", "alice")
    done = await anyio.to_thread.run_sync(
        lambda: run_cli(*args, "--password", "wrong", cwd=tmp_path)
    )
    assert done.returncode == exits.NO_PERMISSION, done.stderr
    assert "error (unauthorized): the NATS server at" in done.stderr, done.stderr
    assert "refuses user 'alice' (or its password): nats: 'Authorization Violation'" in done.stderr


async def test_a_worker_refused_its_command_subjects_exits_naming_them(
    node: NatsNode, tmp_path: Path
) -> None:
    """A worker whose user may not subscribe to an aggregate's commands (``user-worker`` asked
    to serve ``order`` too) stops with exit 77 naming the subject, instead of serving nothing."""
    worker = WorkerProcess(tmp_path / "worker", node.url, user="user-worker")
    with workers(worker):
        assert await worker.wait_exit(60) == exits.NO_PERMISSION, worker.log_tail()
    assert "does not allow user 'user-worker' to subscribe to 'cmd.order.*.*'" in worker.log_tail()


async def test_requests_refused_together_all_fail_and_warn_nothing(node: NatsNode) -> None:
    """Ten requests refused at once all fail with :class:`PermissionDenied`, and the server's
    ten refusals are reported through them, not as warnings."""
    nc = await open_connection(node.url, options("alice"))
    subject = "$JS.API.STREAM.INFO.EVENTS"
    try:
        with capture_logs() as logs:
            results = await asyncio.gather(
                *(nc.request(subject, timeout=600) for _ in range(10)), return_exceptions=True
            )
            await nc.flush()  # every refusal has arrived
            await nc.flush()
    finally:
        await nc.close()
    assert all(isinstance(r, PermissionDenied) for r in results), results
    assert [e for e in logs if e["log_level"] == "warning"] == []


async def test_every_generated_role_runs_with_default_flags(node: NatsNode, tmp_path: Path) -> None:
    """``cqrs worker``, ``projector``, ``processes`` and ``gateway`` processes on their
    generated users, without extra flags, run the demo scenario, reload an aggregate from its
    history in a restarted worker, answer over HTTP and restore a projection's snapshot in a
    restarted projector, then stop cleanly; the server refuses them nothing but each worker's
    one stream-wide direct get."""
    port = free_port()
    roles = {
        "worker": WorkerProcess(tmp_path / "w1", node.url, app=DEFAULT_APP, scoped_reads=False),
        "projector": WorkerProcess(
            tmp_path / "p", node.url, user="projector", command="projector", app=DEFAULT_APP
        ),
        "processes": WorkerProcess(
            tmp_path / "m", node.url, user="processes", command="processes", app=DEFAULT_APP
        ),
        "gateway": WorkerProcess(
            tmp_path / "g",
            node.url,
            user="gateway",
            command="gateway",
            app=DEFAULT_APP,
            extra=["--port", str(port)],
        ),
    }
    restarted = WorkerProcess(tmp_path / "w2", node.url, app=DEFAULT_APP, scoped_reads=False)
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}")

    async def gateway_ready() -> bool:
        try:
            return (await http.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    with workers(*roles.values()):
        for name in ("worker", "projector", "processes"):
            await roles[name].wait_ready(60)
        await wait_until(gateway_ready, 60, "the gateway's /readyz", period=0.2)
        nc = await open_connection(node.url, options("alice"))
        try:
            client = Client(nc, timeout=30)
            await run_scenario(client, lambda _: None)
            await client.send("user", "u-1", "create", USER)
            await client.send("user", "u-1", "change_email", {"email": "b@example.com"})
            roles["worker"].signal(signal.SIGTERM)
            assert await roles["worker"].wait_exit(30) == 0
            with workers(restarted):
                await restarted.wait_ready(60)
                last = await client.send("user", "u-1", "change_role", {"role": "admin"})
                assert last.version == 3  # the restarted worker read the history
                answer = await http.get(
                    "/queries/users/get_user_by_id",
                    params={"user_id": "u-1"},
                    headers={"Cqrs-Min-Seq": str(last.seq)},
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["result"]["role"] == "admin"
                for process in (restarted, *list(roles.values())[1:]):
                    process.signal(signal.SIGTERM)
                    assert await process.wait_exit(30) == 0, process.log_tail()
            # The projector stopped with a snapshot; started again, it restores it with the
            # batched direct gets its user is granted, not through the slower consumer.
            projector = roles["projector"]
            projector.start()
            await projector.wait_ready(60)
            projector.signal(signal.SIGTERM)
            assert await projector.wait_exit(30) == 0, projector.log_tail()
            events = projector.log_events()
            restored = {e["projection"] for e in events if e["event"] == "snapshot_restored"}
            assert restored == {"orders", "users"}, projector.log_tail()
            assert "snapshot_read_by_consumer" not in [e["event"] for e in events]
        finally:
            await nc.close()
            await http.aclose()
    refused = [line for line in node.log_tail(1_000_000).splitlines() if "Violation" in line]
    assert refused, "the worker was expected to try the stream-wide direct get"
    assert all('"$JS.API.DIRECT.GET.EVENTS"' in line for line in refused), refused


async def test_a_command_the_client_user_may_not_send_fails_at_once(node: NatsNode) -> None:
    """``Client.send`` to an aggregate type outside the client user's grant raises
    :class:`PermissionDenied` at once, without resending it until its timeout."""
    nc = await open_connection(node.url, options("alice"))
    try:
        client = Client(nc, timeout=600)
        with pytest.raises(PermissionDenied, match=r"publish to 'cmd\.invoice\.i-1\.create'"):
            await client.send("invoice", "i-1", "create", {})
        assert client.retries == 0
    finally:
        await nc.close()

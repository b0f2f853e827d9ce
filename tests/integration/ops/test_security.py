"""The generated accounts and TLS settings, enforced by a real nats-server."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Awaitable, Iterator
from pathlib import Path

import nats
import nats.errors
import pytest

from aggregates import AGGREGATES
from aggregates.payment_deadline import payment_deadline
from aggregates.scenario import run_scenario
from projections import PROJECTIONS
from runtime import Client, EventStore, StreamSettings, run_worker
from runtime.errors import Timeout
from runtime.processes.parking import ParkedStore
from runtime.processes.run import run_process_managers
from runtime.processes.settings import ProcessSettings
from runtime.read.replicas import run_projections
from runtime.read.settings import ProjectorSettings
from runtime.transport.connection import open_connection
from runtime.transport.direct_get import DirectGetter
from runtime.transport.streams import ensure_event_stream
from runtime.wire import codec
from runtime.wire.partitions import DEFAULT_PARTITIONS, partition_of

from ..certs import CertFiles, make_certs
from ..procs import NatsNode, password, single_node, wait_until
from .accounts import APP, PLAN, SCOPED, options, session


async def with_event_stream(node: NatsNode) -> None:
    async with session(node, "admin") as admin:
        await ensure_event_stream(admin.nc.jetstream(), StreamSettings())


async def test_an_unauthenticated_connection_is_refused(node: NatsNode) -> None:
    """Without a user (or with a wrong password) the server refuses the connection."""
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(node.url, allow_reconnect=False, connect_timeout=2)
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            node.url, user="alice", password="wrong", allow_reconnect=False, connect_timeout=2
        )


async def test_the_demo_scenario_runs_with_least_privilege_users(node: NatsNode) -> None:
    """Worker, projector and client users run the demo scenario and its queries; no denials."""
    said: list[str] = []
    worker_nc = await open_connection(node.url, options("worker"))
    projector_nc = await open_connection(node.url, options("projector"))
    client_nc = await open_connection(node.url, options("alice"))
    try:
        async with (
            run_worker(worker_nc, AGGREGATES, SCOPED),
            run_projections(projector_nc, PROJECTIONS, ProjectorSettings(replica="r1")),
        ):
            client = Client(client_nc, timeout=5)
            ids = await run_scenario(client, said.append)
            last = await client.send("user", ids["user"], "change_role", {"role": "admin"})
            order = await client.query(
                "orders", "get_order_by_id", {"order_id": ids["order_a"]}, min_seq=last
            )
            user = await client.query(
                "users", "get_user_by_id", {"user_id": ids["user"]}, min_seq=last
            )
        assert order.result["status"] == "delivered"
        assert user.result["role"] == "admin"
    finally:
        await client_nc.close()
        await projector_nc.close()
        await worker_nc.close()
    async with session(node, "admin") as admin:
        info = await admin.nc.jetstream().stream_info("EVENTS")
        assert info.state.messages == 10
    assert "Violation" not in node.log_tail(100_000)


async def test_the_payment_deadline_runs_with_the_processes_user(
    node: NatsNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``processes`` user consumes, keeps instances, schedules, cancels and fires timers,
    sends the cancel and parks an event that does not decode, without a single permissions
    violation."""
    monkeypatch.setenv("CQRS_ORDER_PAYMENT_TIMEOUT", "1")
    await with_event_stream(node)
    worker_nc = await open_connection(node.url, options("worker"))
    processes_nc = await open_connection(node.url, options("processes"))
    client_nc = await open_connection(node.url, options("alice"))
    lines = [{"sku": "a", "quantity": 1, "unit_price": "1.00"}]
    try:
        async with (
            run_worker(worker_nc, AGGREGATES, SCOPED),
            run_process_managers(processes_nc, [payment_deadline], ProcessSettings()) as reactors,
        ):
            client = Client(client_nc, timeout=5)
            await client.send("order", "unpaid", "create", {"user_id": "u-1", "lines": lines})
            await client.send("order", "paid", "create", {"user_id": "u-1", "lines": lines})
            await client.send("order", "paid", "update_status", {"status": "paid"})

            await wait_until(
                lambda: reactors[0].caught_up(4), 20, "the deadline's cancel", period=0.25
            )
            async with session(node, "admin") as admin:
                bad = codec.dumps([{"type": "order.created.v2", "data": {"lines": "none"}}])
                await admin.nc.jetstream().publish("events.order.bad", bad)
                parked = ParkedStore(admin.nc)
                await wait_until(
                    lambda: _equals(parked.counts("payment_deadline"), {"bad": 1}), 20, "parked"
                )
    finally:
        await client_nc.close()
        await processes_nc.close()
        await worker_nc.close()
    async with session(node, "admin") as admin:
        store = EventStore(admin.nc)
        await store.start()
        unpaid = [e.type for c in await store.history("order", "unpaid") for e in c.events]
        paid = [e.type for c in await store.history("order", "paid") for e in c.events]
    assert unpaid == ["order.created.v2", "order.cancelled.v1"]
    assert "order.cancelled.v1" not in paid
    assert "Violation" not in node.log_tail(100_000)


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def test_a_client_cannot_append_events_or_use_jetstream(node: NatsNode) -> None:
    """``client`` may not publish to ``events.>`` nor call any ``$JS.API`` subject."""
    await with_event_stream(node)
    async with session(node, "alice") as alice:
        await alice.nc.publish("events.user.u-1", b"[]")
        await alice.denied('publish to "events.user.u-1"')
        for subject in (
            "$JS.API.STREAM.INFO.EVENTS",
            "$JS.API.DIRECT.GET.EVENTS",
            "$JS.API.STREAM.DELETE.EVENTS",
            "$JS.API.CONSUMER.CREATE.EVENTS",
        ):
            await alice.nc.publish(subject, b"{}", reply=alice.nc.new_inbox())
            await alice.denied(f'publish to "{subject}"')
    async with session(node, "admin") as admin:
        assert (await admin.nc.jetstream().stream_info("EVENTS")).state.messages == 0


async def test_a_client_cannot_read_other_clients_replies(node: NatsNode) -> None:
    """``alice`` may subscribe only under ``_INBOX_alice``; bob's replies stay bob's."""
    worker_nc = await open_connection(node.url, options("worker"))
    try:
        async with run_worker(worker_nc, AGGREGATES, SCOPED), session(node, "alice") as alice:
            for subject in ("_INBOX_bob.>", "_INBOX.>", ">", "cmd.>"):
                await alice.nc.subscribe(subject)
                await alice.denied(f'subscription to "{subject}"')
            bob_nc = await open_connection(node.url, options("bob"))
            try:
                result = await Client(bob_nc).send(
                    "user", "u-bob", "create", {"name": "Bob", "email": "bob@example.com"}
                )
            finally:
                await bob_nc.close()
            assert result.version == 1
    finally:
        await worker_nc.close()


async def test_a_projector_cannot_send_commands(node: NatsNode) -> None:
    """``projector`` may not publish on ``cmd.>`` subjects (checked after the partition
    mapping, so the denial names the partitioned subject)."""
    async with session(node, "projector") as projector:
        await projector.nc.publish("cmd.user.u-1.create", b"{}", reply=projector.nc.new_inbox())
        partition = partition_of(DEFAULT_PARTITIONS, "user", "u-1")
        await projector.denied(f'publish to "cmd.{partition}.user.u-1.create"')


async def test_a_worker_serves_and_appends_only_its_aggregates(node: NatsNode) -> None:
    """A worker user generated for ``user`` can neither serve nor append ``order``."""
    async with session(node, "user-worker") as worker:
        await worker.nc.subscribe("cmd.order.*.*", queue="cqrs-order")
        await worker.denied('subscription to "cmd.order.*.*"')
        await worker.nc.publish("events.order.o-1", b"[]", reply=worker.nc.new_inbox())
        await worker.denied('publish to "events.order.o-1"')


async def test_only_admin_can_delete_or_purge_a_stream(node: NatsNode) -> None:
    """Delete and purge requests from every other role are denied; admin deletes the stream."""
    await with_event_stream(node)
    for user in ("alice", "worker", "projector"):
        async with session(node, user) as other:
            for verb in ("DELETE", "PURGE"):
                subject = f"$JS.API.STREAM.{verb}.EVENTS"
                await other.nc.publish(subject, b"", reply=other.nc.new_inbox())
                await other.denied(f'publish to "{subject}"')
    async with session(node, "admin") as admin:
        js = admin.nc.jetstream()
        assert (await js.stream_info("EVENTS")).config.name == "EVENTS"
        assert await js.delete_stream("EVENTS")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("tls"))


@contextlib.contextmanager
def tls_node(directory: Path, certs: CertFiles, *, mutual: bool) -> Iterator[NatsNode]:
    server = single_node(directory, APP, PLAN, certs=certs, mutual_tls=mutual)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_a_tls_only_server_refuses_plain_and_accepts_the_test_ca(
    tmp_path: Path, certs: CertFiles
) -> None:
    """A client that does not trust the test CA is refused its TLS upgrade; one that does works."""
    with tls_node(tmp_path / "nats", certs, mutual=False) as server:
        await server.wait_listening()
        with pytest.raises(ssl.SSLCertVerificationError, match="CERTIFICATE_VERIFY_FAILED"):
            await nats.connect(
                server.url,
                user="alice",
                password=password("alice"),
                allow_reconnect=False,
                connect_timeout=2,
            )
        nc = await open_connection(server.url, options("alice", tls_ca=str(certs.ca)))
        try:
            assert isinstance(nc._transport._io_writer.get_extra_info("ssl_object"), ssl.SSLObject)
            await nc.flush()
        finally:
            await nc.close()


async def test_mutual_tls_requires_a_client_certificate(tmp_path: Path, certs: CertFiles) -> None:
    """With --mtls, trusting the CA is not enough: the client must present a certificate."""
    with tls_node(tmp_path / "nats", certs, mutual=True) as server:
        await server.wait_listening()
        without_certificate = ssl.create_default_context(cafile=str(certs.ca))
        # TLS 1.3 checks the client's certificate after the client's handshake is done, so the
        # refusal reaches the client as the server's alert or as the connection it then drops
        # (reset, a broken pipe, or an end of stream nats-py reports as UnexpectedEOF).
        dropped = (ssl.SSLError, ConnectionResetError, BrokenPipeError, nats.errors.UnexpectedEOF)
        with pytest.raises(dropped):
            nc = await nats.connect(
                server.url,
                user="alice",
                password=password("alice"),
                tls=without_certificate,
                allow_reconnect=False,
                connect_timeout=10,  # generous: a loaded machine is slow to handshake
            )
            await nc.close()
        await wait_until(
            lambda: "didn't provide a certificate" in server.log_tail(),
            10,
            "the server to log why it refused the client",
        )
        nc = await open_connection(
            server.url,
            options(
                "alice",
                tls_ca=str(certs.ca),
                tls_cert=str(certs.client),
                tls_key=str(certs.client_key),
            ),
        )
        try:
            await nc.flush()
        finally:
            await nc.close()


async def test_a_worker_reads_the_newest_commit_of_its_aggregates_only(node: NatsNode) -> None:
    """The newest-commit read goes through the subject-scoped direct get: a worker generated for
    ``user`` reads a user's commit that way and is denied an order's."""
    await with_event_stream(node)
    async with session(node, "admin") as admin:
        js = admin.nc.jetstream()
        await js.publish("events.user.u-1", b"[]")
        await js.publish("events.order.o-1", b"[]")
    async with session(node, "user-worker") as worker:
        reader = DirectGetter(worker.nc, "EVENTS", timeout=2)
        await reader.start()
        try:
            newest = await reader.last_for_subject("events.user.u-1")
            assert newest is not None and newest.seq == 1
            with pytest.raises(Timeout):  # denied: no answer comes
                await reader.last_for_subject("events.order.o-1")
        finally:
            await reader.stop()
        await worker.denied('publish to "$JS.API.DIRECT.GET.EVENTS.events.order.o-1"')

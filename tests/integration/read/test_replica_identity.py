"""One live replica per replica id: a duplicate is refused, a dead one's id is taken over."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import anyio
import nats.errors
import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue
from structlog.testing import capture_logs

from projections import orders
from runtime import EventStore, ProjectorSettings, ReplicaInUse, run_replica
from runtime.read.presence import BUCKET, _take, claim_key, presence_bucket
from runtime.read.status import collect
from runtime.transport.embedded import EmbeddedServer
from runtime.transport.startup import waiting_for_jetstream

from ..procs import READ_APP, WorkerProcess, wait_until, workers

TTL = 1.5
CLAIM = orjson.dumps({"host": "here", "pid": 1, "since": "now", "token": "t-1"})


class AnswerLost(KeyValue):
    """The claims bucket on the real server, except that the answer to its first create is
    lost after the server stored the claim, as a client sees a timeout while a cluster elects
    its leaders."""

    def __init__(self, nc: NATS) -> None:
        super().__init__(BUCKET, f"KV_{BUCKET}", f"$KV.{BUCKET}.", nc.jetstream(), direct=True)
        self.lost = 0

    async def create(
        self, key: str, value: bytes, validate_keys: bool = True, msg_ttl: float | None = None
    ) -> int:
        revision = await super().create(key, value, validate_keys, msg_ttl)
        if not self.lost:
            self.lost = revision
            raise nats.errors.TimeoutError
        return revision


def settings(replica: str) -> ProjectorSettings:
    return ProjectorSettings(
        replica=replica, snapshot_every=None, snapshot_interval=None, presence_ttl=TTL
    )


async def test_a_second_live_replica_with_the_same_id_is_refused(
    nc: NATS, store: EventStore
) -> None:
    """While a replica runs and renews its claim, another one with its id refuses to start,
    naming the live one; a replica with another id starts beside it."""
    async with run_replica(nc, orders, settings("r1")):
        with pytest.raises(ReplicaInUse, match="'r1' of projection 'orders' is already live"):
            async with run_replica(nc, orders, settings("r1")):
                pass
        async with run_replica(nc, orders, settings("r2")) as other:
            assert other.replica == "r2"


async def test_a_killed_replica_s_id_is_taken_over_once_its_claim_expires(
    nc: NATS, store: EventStore
) -> None:
    """A claim nobody renews (its holder was killed) expires, and a replica restarting under
    that id takes it over; a stopped replica releases its id at once."""
    claims = await presence_bucket(nc, ttl=TTL, replicas=1)
    await claims.create(claim_key("orders", "r1"), orjson.dumps({"pid": 999_999, "host": "gone"}))
    async with run_replica(nc, orders, settings("r1")):
        entry = await claims.get(claim_key("orders", "r1"))
        assert orjson.loads(entry.value or b"{}")["pid"] == os.getpid()
    async with run_replica(nc, orders, settings("r1")):  # released: no wait for the TTL
        pass


async def test_status_lists_the_consumers_no_live_replica_uses(nc: NATS, store: EventStore) -> None:
    """A stopped replica's consumer shows up in the status report as orphaned, a live one's not."""
    async with run_replica(nc, orders, settings("gone")):
        pass
    orphans: list[str] = []

    async def only_the_stopped_one() -> bool:
        nonlocal orphans
        # A live replica that answers after the report's window would show up too: ask again.
        report = await collect(nc, projections=["orders"], timeout=1.0)
        orphans = [c["consumer"] for c in report["orphaned_consumers"]]
        return orphans == ["cqrs-proj-orders-gone"]

    async with run_replica(nc, orders, settings("live")):
        with contextlib.suppress(TimeoutError):
            await wait_until(only_the_stopped_one, 30, "the report to name the stopped replica")
    assert orphans == ["cqrs-proj-orders-gone"]


async def test_a_projector_process_with_a_taken_id_exits_with_a_message(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """`cqrs projector --replica p1` while another live p1 runs exits 75 with one line saying
    so, and the live one keeps serving."""
    await nats_server.wait_ready()
    common = ("--projections", "counters", "--replica", "p1")
    first = WorkerProcess(tmp_path / "a", nats_server.url, None, "projector", READ_APP, common)
    second = WorkerProcess(tmp_path / "b", nats_server.url, None, "projector", READ_APP, common)
    with workers(first):
        await first.wait_ready()
        with workers(second):
            assert await second.wait_exit(60) == 75
        assert first.process is not None and first.process.poll() is None
    assert "error (replica_in_use): replica 'p1' of projection 'counters'" in second.log_tail()


async def test_a_claim_stored_though_its_create_timed_out_is_recognised_as_its_own(
    nc: NATS,
) -> None:
    """A claim tried again after its create timed out, though the server stored it, is known by
    its token as this replica's own and taken at once, not waited on and refused as another's."""
    await presence_bucket(nc, ttl=TTL, replicas=1)
    claims = AnswerLost(nc)
    key = claim_key("orders", "r1")
    with capture_logs() as logs, waiting_for_jetstream(30):
        revision = await _take(claims, "orders", "r1", CLAIM, TTL)
    assert claims.lost and revision == claims.lost
    assert (await claims.get(key)).value == CLAIM
    assert not any(e["event"] == "replica_claim_held" for e in logs)


async def test_a_claim_made_while_starting_waits_for_its_bucket_to_answer(nc: NATS) -> None:
    """While a replica starts, a claim whose bucket does not answer yet (no stream takes the
    write, as before a new bucket's leader is elected) is tried again until it does."""
    claims = await presence_bucket(nc, ttl=TTL, replicas=1)
    await nc.jetstream().delete_key_value(BUCKET)
    key = claim_key("orders", "r1")
    with capture_logs() as logs:

        async def bucket_back() -> None:
            def waiting() -> bool:
                return any(e["event"] == "jetstream_waiting" for e in logs)

            await wait_until(waiting, 30, "the claim to wait for its bucket")
            await presence_bucket(nc, ttl=TTL, replicas=1)

        async with anyio.create_task_group() as tg:
            tg.start_soon(bucket_back)
            with waiting_for_jetstream(60):
                revision = await _take(claims, "orders", "r1", CLAIM, TTL)
    assert revision == 1 and (await claims.get(key)).value == CLAIM

"""The projection snapshot store on a real Object Store: a restore downloads the chunks in
batched direct gets, a user refused them downloads through a consumer, and chunks or a digest
that do not match the object's info make the snapshot unreadable."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from nats.aio.client import Client as NATS
from structlog.testing import capture_logs

import runtime.read.snapshots as snapshots_module
from projections.orders import OrdersModel, orders
from runtime.bench.projections import big_model
from runtime.read.snapshot_blob import CorruptSnapshot
from runtime.read.snapshots import (
    DEFAULT_BUCKET,
    ProjectionSnapshot,
    ProjectionSnapshotStore,
    encode_snapshot,
)
from runtime.transport.connection import ConnectOptions, open_connection
from runtime.transport.embedded import EmbeddedServer
from tests.ports import free_port

INFO = ProjectionSnapshot(
    projection="orders",
    replica="r1",
    seq=1234,
    schema=1,
    events=20_000,
    taken_at="2026-12-07T12:00:00+00:00",
)
OBJ_STREAM = f"OBJ_{DEFAULT_BUCKET}"


def model() -> OrdersModel:
    """A model whose blob spans many of the Object Store's 128 KiB chunks (the benchmark's
    rows compress to about 23 bytes each)."""
    result: OrdersModel = big_model(60_000)
    return result


@pytest.fixture(autouse=True)
def small_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three chunks a direct get, so that a download takes several requests."""
    monkeypatch.setattr(snapshots_module, "CHUNKS_PER_REQUEST", 3)


async def started(nc: NATS) -> ProjectionSnapshotStore:
    store = ProjectionSnapshotStore(nc)
    await store.start()
    return store


async def saved(nc: NATS, original: OrdersModel) -> ProjectionSnapshot:
    store = await started(nc)
    info = await store.save(orders, INFO, encode_snapshot(orders, original, INFO))
    assert (await store.obs.get_info(info.object_name)).chunks >= 6
    return info


@pytest.fixture
async def users(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    """A server with an unrestricted user, one refused the consumers of the snapshot bucket
    (so it can only download by direct get) and one refused its batched direct gets."""
    deny_consumers = [
        f"$JS.API.CONSUMER.CREATE.{OBJ_STREAM}",
        f"$JS.API.CONSUMER.CREATE.{OBJ_STREAM}.>",
    ]
    denials = {
        "admin": [],
        "direct": deny_consumers,
        "consumer": [f"$JS.API.DIRECT.GET.{OBJ_STREAM}"],
    }
    entries = ", ".join(
        f"{{user: {name}, password: {name}, permissions: "
        f'{{publish: {{allow: [">"], deny: {orjson.dumps(deny).decode()}}}, '
        'subscribe: [">"]}}'
        for name, deny in denials.items()
    )
    config = tmp_path / "server.conf"
    config.write_text(f"authorization {{ users = [{entries}] }}\n")
    server = EmbeddedServer(tmp_path / "js", port=free_port(), config_file=config)
    server.start()
    try:
        await server.wait_ready()
        yield server
    finally:
        server.stop()


async def connect(server: EmbeddedServer, user: str) -> NATS:
    return await open_connection(server.url, ConnectOptions(user=user, password=user))


@contextlib.asynccontextmanager
async def restoring_as(
    server: EmbeddedServer, user: str
) -> AsyncIterator[tuple[ProjectionSnapshotStore, OrdersModel, ProjectionSnapshot]]:
    """A model saved by the unrestricted user; ``user``'s started store, the model and the
    snapshot's info."""
    admin, nc = await connect(server, "admin"), await connect(server, user)
    try:
        original = model()
        yield await started(nc), original, await saved(admin, original)
    finally:
        await nc.close()
        await admin.close()


async def test_a_restore_downloads_the_chunks_in_batched_direct_gets(
    users: EmbeddedServer,
) -> None:
    """A user refused every consumer of the bucket restores a snapshot of many chunks, in
    several requests, to the model that was saved, rows in their order."""
    async with restoring_as(users, "direct") as (store, original, info):
        with capture_logs() as logs:
            restored = await store.load(orders, info)
    assert restored == original
    assert list(restored.orders) == list(original.orders)
    assert "snapshot_read_by_consumer" not in [e["event"] for e in logs]


async def test_a_user_refused_batched_direct_gets_downloads_through_a_consumer(
    users: EmbeddedServer,
) -> None:
    """A user generated before restores used direct gets keeps restoring, through nats-py's
    consumer; the refusal is logged once, and not asked again."""
    async with restoring_as(users, "consumer") as (store, original, info):
        with capture_logs() as logs:
            for _ in range(2):
                assert await store.load(orders, info) == original
    assert [e["event"] for e in logs].count("snapshot_read_by_consumer") == 1


async def chunk_subject(nc: NATS, info: ProjectionSnapshot) -> str:
    obs = await nc.jetstream().object_store(DEFAULT_BUCKET)
    return f"$O.{DEFAULT_BUCKET}.C.{(await obs.get_info(info.object_name)).nuid}"


async def test_a_chunk_more_than_the_object_has_is_unreadable(nc: NATS) -> None:
    info = await saved(nc, model())
    await nc.jetstream().publish(await chunk_subject(nc, info), b"\x00" * 100)
    store = await started(nc)
    with pytest.raises(CorruptSnapshot, match="chunks"):
        await store.load(orders, info)


async def test_a_chunk_missing_is_unreadable_after_asking_again(nc: NATS) -> None:
    """A chunk that is gone (the object replaced or removed meanwhile) is asked for again, in
    case the replica answering was behind, then the snapshot is unreadable."""
    info = await saved(nc, model())
    js = nc.jetstream()
    chunk = await js.get_last_msg(OBJ_STREAM, await chunk_subject(nc, info))
    await js.delete_msg(OBJ_STREAM, chunk.seq)
    store = await started(nc)
    with pytest.raises(CorruptSnapshot, match="chunks"):
        await store.load(orders, info)


@pytest.mark.parametrize(
    "digest",
    ["SHA-256=" + base64.urlsafe_b64encode(b"\x01" * 32).decode(), "SHA-256=not base64!"],
)
async def test_chunks_that_do_not_match_the_digest_are_unreadable(nc: NATS, digest: str) -> None:
    info = await saved(nc, model())
    js = nc.jetstream()
    name = base64.urlsafe_b64encode(info.object_name.encode()).decode()
    meta_subject = f"$O.{DEFAULT_BUCKET}.M.{name}"
    meta = orjson.loads((await js.get_last_msg(OBJ_STREAM, meta_subject)).data)
    meta["digest"] = digest
    await js.publish(meta_subject, orjson.dumps(meta), headers={"Nats-Rollup": "sub"})
    store = await started(nc)
    with pytest.raises(CorruptSnapshot, match="digest"):
        await store.load(orders, info)

"""One live replica per replica id: a claim in a JetStream KV bucket, renewed while it runs.

A replica's id names its durable consumer, so two live processes with the same id would share one
consumer, split its deliveries between them and halt each other in delivery-gap storms. Before a
replica touches its consumer it claims the key ``<projection>.<replica>`` of the bucket
``cqrs-replicas`` with an atomic create, renews the claim every third of the bucket's TTL, and
deletes it when it stops.

A claim that exists already is watched for up to one TTL. If its holder renews it, the holder is
alive and this replica refuses to start (:class:`~runtime.errors.ReplicaInUse`). If it expires
unrenewed, its holder is gone (a ``kill -9``, a lost node) and the claim is taken over, so a
restarted replica waits at most one TTL, and a supervisor's quick restarts do not trip its
restart limits. A replica that finds its claim taken by another process stops with the same
error rather than keep consuming beside it.

Each claim carries a token drawn when the replica starts. A create or renewal whose answer was
lost (a timeout while a cluster elects leaders) may still have been stored; when it is tried
again, the token tells this replica's own claim from another's. While the replica starts, the
claim waits for JetStream like its other set-up calls (:mod:`runtime.transport.startup`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NATS
from nats.js import api
from nats.js.kv import KeyValue

from ..errors import ReplicaInUse
from ..log import get_logger
from ..transport.nats_errors import nats_call
from ..transport.startup import DEFAULT_STARTUP_TIMEOUT, jetstream_call, waiting_for_jetstream
from ..transport.streams import bind_key_value

log = get_logger("runtime.read.presence")

BUCKET = "cqrs-replicas"
DEFAULT_TTL = 10.0  # seconds a claim lives without renewal
POLL = 0.25  # seconds between looks at a claim held by another process


def claim_key(projection: str, replica: str) -> str:
    return f"{projection}.{replica}"


async def presence_bucket(nc: NATS, *, ttl: float, replicas: int) -> KeyValue:
    """The claims bucket, created when missing (memory storage: claims need not survive a
    restart of the server, and expire anyway)."""
    js = nc.jetstream(timeout=10.0)
    config = api.KeyValueConfig(
        bucket=BUCKET,
        description="live projection replicas, one claim per replica id",
        history=1,
        ttl=ttl,
        replicas=replicas,
        storage=api.StorageType.MEMORY,
        direct=True,
    )
    return await bind_key_value(js, config, f"the replica bucket {BUCKET!r}")


def _holder(value: bytes | None) -> dict[str, Any]:
    with contextlib.suppress(orjson.JSONDecodeError, TypeError):
        body = orjson.loads(value or b"{}")
        if isinstance(body, dict):
            return body
    return {}


def _refusal(projection: str, replica: str, holder: dict[str, Any], ttl: float) -> ReplicaInUse:
    where = f"{holder.get('host', '?')} pid {holder.get('pid', '?')}"
    return ReplicaInUse(
        f"replica {replica!r} of projection {projection!r} is already live ({where}, since "
        f"{holder.get('since', '?')}); give each replica its own --replica id "
        f"(a stopped or killed replica's claim expires within {ttl:g}s)",
        details={"projection": projection, "replica": replica, "holder": holder},
    )


async def _take(kv: KeyValue, projection: str, replica: str, value: bytes, ttl: float) -> int:
    """Create the claim; wait out one that is not renewed; refuse one that is. A claim that
    carries ``value``'s token is this replica's own (a create whose answer was lost)."""
    key = claim_key(projection, replica)
    token = _holder(value).get("token")
    what = f"claiming replica {replica!r} of {projection!r}"
    deadline = anyio.current_time() + ttl + 2 * POLL
    seen: tuple[int, dict[str, Any]] | None = None
    while True:
        with nats_call(what):
            try:
                return int(await jetstream_call(what, lambda: kv.create(key, value)))
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
            try:
                entry = await jetstream_call(what, lambda: kv.get(key))
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                continue  # it expired or was released in between: try again
        holder = _holder(entry.value)
        if token is not None and holder.get("token") == token:
            log.info("replica_claim_recovered", projection=projection, replica=replica)
            return int(entry.revision or 0)
        if seen is None:
            seen = (int(entry.revision or 0), holder)
            log.info("replica_claim_held", projection=projection, replica=replica, **holder)
        elif int(entry.revision or 0) != seen[0] or anyio.current_time() > deadline:
            raise _refusal(projection, replica, holder, ttl)
        await anyio.sleep(POLL)


async def _renewed(kv: KeyValue, key: str, value: bytes, revision: int) -> int | None:
    """Renew the claim at ``revision``; its new revision, or None when another replica holds it."""
    try:
        return int(await kv.update(key, value, last=revision))
    except nats.js.errors.KeyWrongLastSequenceError:
        pass
    # Our last renewal was stored though its answer was lost, or our claim is gone (expired
    # while this process was stalled, or the server lost it).
    try:
        entry = await kv.get(key)
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
        entry = None
    if entry is not None and _holder(entry.value).get("token") == _holder(value).get("token"):
        return int(entry.revision or 0)
    try:
        return int(await kv.create(key, value))
    except nats.js.errors.KeyWrongLastSequenceError:
        return None


@contextlib.asynccontextmanager
async def claimed(
    nc: NATS,
    projection: str,
    replica: str,
    *,
    ttl: float = DEFAULT_TTL,
    replicas: int = 1,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
) -> AsyncIterator[None]:
    """Hold the claim of ``projection``/``replica`` while the context runs."""
    key = claim_key(projection, replica)
    value = orjson.dumps(
        {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "token": uuid.uuid4().hex,
        }
    )
    with waiting_for_jetstream(startup_timeout):
        kv = await presence_bucket(nc, ttl=ttl, replicas=replicas)
        revision = await _take(kv, projection, replica, value, ttl)
    holder = _holder(value)

    async def renew() -> None:
        nonlocal revision
        while True:
            await anyio.sleep(ttl / 3)
            try:
                renewed = await _renewed(kv, key, value, revision)
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                log.warning("replica_claim_renewal_failed", error=str(exc) or type(exc).__name__)
                continue
            if renewed is None:
                log.error("replica_claim_lost", projection=projection, replica=replica)
                raise _refusal(projection, replica, holder, ttl)
            revision = renewed

    async with anyio.create_task_group() as tg:
        tg.start_soon(renew)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(2),
                contextlib.suppress(nats.errors.Error, nats.js.errors.Error),
            ):
                await kv.delete(key, last=revision)

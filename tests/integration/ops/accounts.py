"""A nats-server on the generated accounts, and sessions of its users, for the ops tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import nats
from nats.aio.client import Client as NATS

from runtime import ConnectOptions, StreamSettings
from runtime.domain.app import load_app
from runtime.ops.permissions import UserPlan
from runtime.write.worker import WorkerSettings

from ..procs import NatsNode, password, wait_until

APP = load_app()
PLAN = UserPlan(
    clients=("alice", "bob", "gateway"),
    workers={"worker": (), "user-worker": ("user",), "order-worker": ("order",)},
)

# The generated worker users may read their aggregates' histories through scoped consumers only.
SCOPED = WorkerSettings(stream=StreamSettings(scoped_reads=True))


class Session:
    """One user's connection and the asynchronous errors the server sent it."""

    def __init__(self, nc: NATS, errors: list[Exception]) -> None:
        self.nc = nc
        self.errors = errors

    async def denied(self, what: str) -> None:
        def violation() -> bool:
            return any(
                "permissions violation" in str(e).lower() and what.lower() in str(e).lower()
                for e in self.errors
            )

        await self.nc.flush()
        await wait_until(violation, 5, f"a permissions violation for {what}")


@contextlib.asynccontextmanager
async def session(node: NatsNode, user: str) -> AsyncIterator[Session]:
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = await nats.connect(
        node.url,
        user=user,
        password=password(user),
        inbox_prefix=f"_INBOX_{user}",
        error_cb=on_error,
        allow_reconnect=False,
    )
    try:
        yield Session(nc, errors)
    finally:
        await nc.close()


def options(user: str, **tls: str) -> ConnectOptions:
    return ConnectOptions(user=user, password=password(user), **tls)

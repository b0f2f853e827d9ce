"""Sequential role flips per user, and the check that every reply and history is exact.

Each user is created as a ``customer`` and then flipped ``support``/``customer`` one command at a
time (each waits for the previous reply). Every flip must append exactly one event with the next
version: a reply with no events (a no-op decided on a stale state), a wrong version or a
rejection is an anomaly, and every stored history must be exactly what was sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import anyio
from nats.aio.client import Client as NATS

from runtime import Client, CqrsError, EventStore


@dataclass
class FlipFlop:
    """``users`` users flipped ``rounds`` times each, at most ``concurrency`` users at once."""

    client: Client
    users: int = 30
    rounds: int = 8
    concurrency: int = 16
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    anomalies: list[str] = field(default_factory=list)
    replies: int = 0

    def user_ids(self) -> list[str]:
        return [f"{self.prefix}-{n}" for n in range(self.users)]

    async def run(self) -> None:
        limit = anyio.Semaphore(self.concurrency)
        async with anyio.create_task_group() as tg:
            for user in self.user_ids():
                tg.start_soon(self._user, user, limit)

    async def _user(self, user: str, limit: anyio.Semaphore) -> None:
        async with limit:
            await self._send(user, "create", {"name": "N", "email": f"{user}@example.com"}, 1)
            for n in range(self.rounds):
                role = "support" if n % 2 == 0 else "customer"
                await self._send(user, "change_role", {"role": role}, n + 2)

    async def _send(self, user: str, command: str, args: dict[str, str], version: int) -> None:
        try:
            result = await self.client.send("user", user, command, args, timeout=30)
        except CqrsError as exc:
            self.anomalies.append(f"{user} v{version}: {exc.code} {exc.message}")
            return
        self.replies += 1
        if len(result.events) != 1 or result.version != version:
            self.anomalies.append(
                f"{user} v{version}: {len(result.events)} events, v{result.version}"
            )

    async def histories_exact(self, nc: NATS) -> list[str]:
        """Every user's stored history, compared with what was sent; the differences."""
        store = EventStore(nc)
        await store.start()
        wrong = []
        try:
            for user in self.user_ids():
                commits = await store.history("user", user)
                roles = [e.data["role"] for c in commits for e in c.events]
                sent = ["customer"] + [
                    "support" if n % 2 == 0 else "customer" for n in range(self.rounds)
                ]
                versions = [c.version for c in commits]
                if roles != sent or versions != list(range(1, len(sent) + 1)):
                    wrong.append(f"{user}: roles {roles}, versions {versions}")
        finally:
            await store.stop()
        return wrong

"""The client's resends of a command nobody serves (a stand-in connection that answers every
request with "no responders", as nats-server does when nothing listens)."""

from __future__ import annotations

import nats.errors
import pytest

from runtime import Client, NoResponders
from runtime.client import LEAST_ATTEMPT


class NobodyListens:
    max_payload = 1024 * 1024

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    async def request(self, subject: str, payload: bytes, timeout: float, headers: object) -> None:
        self.timeouts.append(timeout)
        raise nats.errors.NoRespondersError


async def test_a_command_nobody_serves_ends_as_no_responders_with_no_squeezed_attempt() -> None:
    """Every resend gets at least LEAST_ATTEMPT seconds, so the last attempt cannot run out of
    time before the server's "no responders" arrives and end as a timeout."""
    nc = NobodyListens()
    client = Client(nc, timeout=1.5)  # type: ignore[arg-type]
    for n in range(3):
        with pytest.raises(NoResponders):
            await client.send("user", f"u-{n}", "create", {})
    assert len(nc.timeouts) > 3  # it did resend
    assert min(nc.timeouts) >= LEAST_ATTEMPT

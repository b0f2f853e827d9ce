"""Shutdown ends within its deadline even when the server stops answering during clean-up."""

from __future__ import annotations

import os
import signal

import anyio
from nats.aio.client import Client as NATS

from projections import orders
from runtime import EventStore, ProjectorSettings, run_replica
from runtime.transport.embedded import EmbeddedServer

from ..projection_support import append_orders

DEADLINE = 2.0  # the shutdown deadline of this test
SLOW = 60.0  # a JetStream timeout far beyond it


async def test_a_projector_stops_by_its_deadline_when_the_server_hangs(
    nc: NATS, store: EventStore, nats_server: EmbeddedServer
) -> None:
    """With the server frozen, the final snapshot and consumer clean-up give up at the shutdown
    deadline instead of waiting out their own (much longer) timeouts."""
    await append_orders(store, 3)
    settings = ProjectorSettings(replica="r1", snapshot_every=None, timeout=SLOW)
    assert nats_server.process is not None
    pid = nats_server.process.pid
    try:
        with anyio.fail_after(SLOW / 2):  # without deadlines this would wait out SLOW
            # The shutdown deadline starts once the server is frozen, however long the start took.
            with anyio.CancelScope() as shutdown:
                async with run_replica(nc, orders, settings) as replica:
                    assert await replica.wait_for(3, timeout=10)
                    os.kill(pid, signal.SIGSTOP)
                    shutdown.deadline = anyio.current_time() + DEADLINE
                    await anyio.sleep_forever()
            assert shutdown.cancelled_caught
    finally:
        os.kill(pid, signal.SIGCONT)

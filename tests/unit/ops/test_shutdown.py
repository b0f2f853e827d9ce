"""Graceful shutdown: how a signal that arrives while the process starts is reported."""

from __future__ import annotations

import os
import signal

import anyio
from structlog.testing import capture_logs

from runtime.ops.shutdown import graceful_shutdown


async def test_a_signal_while_starting_is_no_cut_short_drain_even_once_serving() -> None:
    """Ctrl-C while starting stops the process at once, and it is not reported as a drain cut
    short (exit 1) when the start-up reached its serving wait before the cancellation took
    effect, e.g. from a shielded start-up step."""
    with capture_logs() as logs:
        async with graceful_shutdown(timeout=5) as shutdown:
            with anyio.CancelScope(shield=True), anyio.fail_after(10):
                os.kill(os.getpid(), signal.SIGINT)
                # The watcher handles the signal between these steps; it sets no event to wait on.
                while shutdown.signal is None:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            await shutdown.wait()
    assert shutdown.signal == signal.SIGINT
    assert not shutdown.forced
    assert [e["event"] for e in logs] == ["stopped_while_starting"]


async def test_a_signal_while_serving_drains_and_ends_complete() -> None:
    """Ctrl-C while serving starts the drain, which ends complete, not forced."""
    with capture_logs() as logs:
        async with graceful_shutdown(timeout=5) as shutdown:

            async def interrupt() -> None:
                os.kill(os.getpid(), signal.SIGINT)

            async with anyio.create_task_group() as tg:
                tg.start_soon(interrupt)
                assert await shutdown.wait() == signal.SIGINT
    assert not shutdown.forced
    assert [e["event"] for e in logs] == ["shutdown_started", "shutdown_complete"]
    assert logs[0]["drain_seconds"] == 5  # what the drain has, said as such

"""Graceful shutdown of a long-running process: SIGTERM or Ctrl-C drains, within a deadline.

The first SIGTERM/SIGINT ends the serving phase; the process then withdraws from its ready
file, stops taking requests, finishes what is in flight, writes its snapshots and closes its
connection. All of that must fit in ``timeout`` seconds (Kubernetes sends SIGKILL after its
``terminationGracePeriodSeconds``, systemd after ``TimeoutStopSec``): past the deadline whatever
is left is cancelled and the process exits 1. A second signal cancels at once.

::

    async with graceful_shutdown(timeout=20) as shutdown:
        async with connect(...) as nc, run_app(nc, app):
            await shutdown.wait()
    # here: drained (exit 0) or cut short (shutdown.forced is True)
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator

import anyio
import structlog
from anyio.abc import TaskGroup

log = structlog.get_logger("runtime.ops.shutdown")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Shutdown:
    """The handle :func:`graceful_shutdown` yields: wait for the signal, learn how it ended."""

    def __init__(
        self,
        scope: anyio.CancelScope,
        tg: TaskGroup,
        signals: AsyncIterator[int],
        timeout: float,
    ) -> None:
        self._scope = scope
        self._signals = signals
        self._tg = tg
        self.timeout = timeout
        self.signal: int | None = None
        self.started_at: float | None = None

    @property
    def forced(self) -> bool:
        """Whether the deadline or a second signal cut the drain short."""
        return self._scope.cancelled_caught or self._scope.cancel_called

    async def wait(self) -> int:
        """Block until SIGINT or SIGTERM, then start the drain deadline; return the signal."""
        async for signum in self._signals:
            self.begin(int(signum))
            break
        self._tg.start_soon(self._second_signal)
        assert self.signal is not None
        return self.signal

    def begin(self, signum: int = 0) -> None:
        """Start the drain now (as if a signal had arrived)."""
        self.signal = signum
        self.started_at = anyio.current_time()
        self._scope.deadline = self.started_at + self.timeout
        log.info("shutdown_started", signal=signum, timeout=self.timeout)

    async def _second_signal(self) -> None:
        async for signum in self._signals:
            log.warning("shutdown_forced", signal=int(signum))
            self._scope.cancel()
            return


@contextlib.asynccontextmanager
async def graceful_shutdown(timeout: float) -> AsyncIterator[Shutdown]:
    """A scope whose clean-up after the first signal is bounded by ``timeout`` seconds."""
    # One receiver for the whole scope: between two signals, none falls to the default handler.
    with anyio.open_signal_receiver(*SIGNALS) as signals:
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as scope:
                shutdown = Shutdown(scope, tg, signals, timeout)
                yield shutdown
            tg.cancel_scope.cancel()
    if shutdown.forced:
        log.warning("shutdown_incomplete", timeout=timeout)
    elif shutdown.started_at is not None:
        log.info("shutdown_complete", seconds=round(anyio.current_time() - shutdown.started_at, 3))


def budgets(timeout: float) -> tuple[float, float]:
    """Split a shutdown deadline into (drain, close-the-connection) so the sum stays within it."""
    close = min(5.0, timeout * 0.2)
    return timeout - close, close

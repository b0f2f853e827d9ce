"""Graceful shutdown of a long-running process: SIGTERM or Ctrl-C drains, within a deadline.

The first SIGTERM/SIGINT (or SIGHUP: the terminal closed) ends the serving phase; the process then
withdraws from its ready file, stops taking requests, finishes what is in flight, writes its
snapshots and closes its connection. All of that must fit in ``timeout`` seconds (Kubernetes sends
SIGKILL after its ``terminationGracePeriodSeconds``, systemd after ``TimeoutStopSec``): past the
deadline whatever is left is cancelled and the process exits 1. A second signal cancels at once. A
signal that arrives while the process is still starting (connecting, restoring) has nothing to
drain and stops it at once. When the connection closes for good while serving,
:meth:`Shutdown.wait` raises :class:`~runtime.errors.ConnectionClosed` after starting the same
drain, so the process leaves its ready file and exits non-zero for its supervisor to restart it.

::

    async with graceful_shutdown(timeout=20) as shutdown:
        async with connect(...) as nc, run_app(nc, app):
            await shutdown.wait(nc)
    # here: drained (exit 0) or cut short (shutdown.forced is True)
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from nats.aio.client import Client as NATS

from ..errors import ConnectionClosed
from ..log import get_logger
from ..transport.lifeline import lifeline_of, wait_closed

log = get_logger("runtime.ops.shutdown")

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: the terminal went away


class Shutdown:
    """The handle :func:`graceful_shutdown` yields: wait for the signal, learn how it ended."""

    def __init__(self, scope: anyio.CancelScope, timeout: float) -> None:
        self._scope = scope
        self._signalled = anyio.Event()
        self.timeout = timeout
        self.serving = False
        self.stopped_while_starting = False
        self.signal: int | None = None
        self.started_at: float | None = None

    @property
    def forced(self) -> bool:
        """Whether the deadline or a second signal cut the drain short."""
        if self.serving and not self.stopped_while_starting:
            return self._scope.cancelled_caught or self._scope.cancel_called
        # Stopped while starting: nothing was cut short, also when the start-up had reached
        # wait() (serving) before the cancellation took effect.
        return False

    async def wait(self, nc: NATS | None = None) -> int:
        """Serve until SIGINT or SIGTERM, then start the drain deadline and return the signal.

        With ``nc``, also until that connection closes for good: then the drain starts the same
        way and :class:`ConnectionClosed` is raised.
        """
        self.serving = True
        async with anyio.create_task_group() as tg:

            async def closed() -> None:
                if nc is not None:
                    await wait_closed(nc)
                    tg.cancel_scope.cancel()

            tg.start_soon(closed)
            await self._signalled.wait()
            tg.cancel_scope.cancel()
        if self.signal is None:
            assert nc is not None
            self.begin(0)
            lifeline = lifeline_of(nc)
            error = lifeline.last_error if lifeline else None
            raise ConnectionClosed(
                f"the NATS connection closed for good: {error or 'closed by the server'}",
                details={"error": error},
            )
        return self.signal

    async def run_until_signal(
        self, work: Callable[[], Awaitable[object]], nc: NATS | None = None
    ) -> bool:
        """Run ``work`` until it returns (True) or a signal cancels it (False: the drain has
        begun as after :meth:`wait`), for a process that does a job rather than serve."""
        finished = False
        async with anyio.create_task_group() as tg:

            async def interrupt() -> None:
                await self.wait(nc)
                tg.cancel_scope.cancel()

            tg.start_soon(interrupt)
            await work()
            finished = True
            tg.cancel_scope.cancel()
        return finished

    def begin(self, signum: int = 0) -> None:
        """Start the drain now (as if a signal had arrived)."""
        self.signal = signum
        self.started_at = anyio.current_time()
        self._scope.deadline = self.started_at + self.timeout
        self._signalled.set()
        # (the drain's part of --shutdown-timeout: the rest is kept for closing the connection)
        log.info("shutdown_started", signal=signum, drain_seconds=self.timeout)

    async def watch(self, signals: AsyncIterator[int]) -> None:
        """The first signal stops a starting process at once and drains a serving one; a
        second cancels the drain."""
        async for signum in signals:
            if self.signal is None and self.serving:
                self.begin(int(signum))
                continue
            if self.signal is None:
                log.info("stopped_while_starting", signal=int(signum))
                self.signal = int(signum)
                self.stopped_while_starting = True
            else:
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
                shutdown = Shutdown(scope, timeout)
                tg.start_soon(shutdown.watch, signals)
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

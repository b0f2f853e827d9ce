"""How far a replica's read model reflects the event stream, and waiting until it reflects a
given sequence (read-your-writes).

The position is the stream sequence of the last commit applied, or more: a replica's consumer
only delivers the events of the aggregates its projection follows, so a command on another
aggregate has a sequence the replica never sees. When a query waits for such a sequence and
nothing arrives, the replica asks the server whether anything it follows is left to deliver up
to the stream's end; if not, its model already reflects that end (:meth:`refresh`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio

from ..backoff import Backoff
from ..errors import CqrsError

# How long a waiter lets nothing happen before it asks the server, longer each time it asks.
REFRESH_BACKOFF = Backoff(first=0.005, maximum=0.5)


class ReadPosition:
    """The applied sequence, what is confirmed beyond it, and the waiters for both."""

    def __init__(
        self,
        stream_last_seq: Callable[[], Awaitable[int]],
        consumer_pending: Callable[[], Awaitable[tuple[int, int]]],
    ) -> None:
        self.applied = 0  # stream sequence of the last commit applied
        self.confirmed = 0  # nothing followed is left to deliver up to here
        self.blocked = False  # halted: the position will not move until a restart
        self.closing = False
        self._stream_last_seq = stream_last_seq
        self._consumer_pending = consumer_pending
        self.head = 0  # the stream's last sequence, as last read
        self.pending = 0  # followed commits not yet delivered, at the last refresh
        self._advanced = anyio.Event()
        self._lock = anyio.Lock()
        self._head_lock = anyio.Lock()
        self._refreshed_at = 0.0
        self._head_at = 0.0  # when the read that gave ``head`` began

    @property
    def value(self) -> int:
        """The stream sequence the read model reflects (read per query: no ``max`` call)."""
        applied, confirmed = self.applied, self.confirmed
        return applied if applied >= confirmed else confirmed

    def signal(self) -> None:
        """Wake every waiter to look at the position again."""
        self._advanced.set()
        self._advanced = anyio.Event()

    def release(self) -> None:
        """Make every waiter give up now (the replica is stopping)."""
        self.closing = True
        self.signal()

    async def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait until the position reaches ``seq``; False on timeout, halt or stop, and as soon
        as the stream's end, read after the wait began, is before ``seq`` (see :meth:`ahead`)."""
        asked = time.monotonic()
        with anyio.move_on_after(timeout):
            refreshes = 0
            while self.value < seq:
                if self.blocked or self.closing or self.ahead(seq, asked):
                    return False
                advanced = self._advanced
                with anyio.move_on_after(REFRESH_BACKOFF.delay(refreshes + 1)):
                    await advanced.wait()
                    continue
                # Nothing applied for a while: ``seq`` may belong to an aggregate this
                # projection does not follow, which its consumer never delivers.
                await self.refresh()
                refreshes += 1
        return self.value >= seq

    def ahead(self, seq: int, since: float) -> bool:
        """Whether ``seq`` was beyond the stream's end at a read begun after ``since``: a
        sequence the stream did not have yet, which no model can reflect by waiting for it."""
        return self._head_at >= since and self.head < seq

    async def read_head(self) -> int:
        """The stream's last sequence, read after this call began (concurrent callers share a
        read)."""
        asked = time.monotonic()
        async with self._head_lock:
            if self._head_at < asked:
                began = time.monotonic()
                self._note_head(await self._stream_last_seq(), began)
        return self.head

    def _note_head(self, last: int, began: float) -> None:
        if began >= self._head_at:
            self.head, self._head_at = last, began

    async def refresh(self) -> None:
        """Confirm the stream's end when nothing followed is left to deliver.

        The stream's last sequence is read *before* the consumer's state: if the consumer then
        has nothing pending and everything it delivered is applied, no followed event up to
        that last sequence can be missing from the model. Concurrent callers share one refresh.
        """
        asked = time.monotonic()
        async with self._lock:
            if self._refreshed_at >= asked:
                return  # a refresh that started after this call was made has just finished
            self._refreshed_at = began = time.monotonic()
            try:
                last = await self._stream_last_seq()
                self._note_head(last, began)
                pending, delivered = await self._consumer_pending()
            except CqrsError:
                return  # the waiter keeps waiting, and tries again later
            self.pending = pending
            caught_up = pending == 0 and delivered <= self.applied and not self.blocked
            if caught_up and last > self.confirmed:
                self.confirmed = last
                self.signal()

"""nats-py's client, with the one repair the runtime's shutdown depends on.

``Client.flush`` queues a future for the server's PONG and waits for it. When the waiting task is
cancelled (a drain deadline, a Ctrl-C while starting) or the flush times out, the future is
cancelled but stays queued, and when the PONG arrives nats-py sets its result: that raises
``InvalidStateError`` inside the read loop, which logs a traceback and *stops reading*. The
connection then looks alive but delivers nothing more, so every later reply times out (a
Ctrl-C during ``cqrs demo``'s start-up took 10 s and printed that traceback). Such a PONG is
consumed here without a result. nats-py's flusher had the same flaw (nats-io/nats.py#624).
"""

from __future__ import annotations

from nats.aio.client import Client as NATS


class NatsClient(NATS):
    """A nats-py client whose read loop survives a cancelled flush."""

    async def _process_pong(self) -> None:
        if self._pongs and self._pongs[0].done():
            self._pongs.pop(0)  # the PONG of a flush nobody waits for any more
            self._pongs_received += 1
            self._pings_outstanding = 0
            return
        await super()._process_pong()

"""Deadlines for clean-up that must not be cancelled half-way.

Clean-up after a context (draining a service, the final snapshot, stopping a consumer or the
embedded server) runs shielded, so the cancellation that ends the context does not cut it
short. A shield without a deadline, though, outlives every deadline around it: a clean-up stuck
on a server that no longer answers would keep the process alive past ``--shutdown-timeout``
until the supervisor kills it. :func:`cleanup_budget` gives each clean-up its own timeout, cut
to what is left of the enclosing deadline (a shutdown's), with a short floor so a clean-up
that starts after the deadline still gets a moment to close what it holds.
"""

from __future__ import annotations

import math

import anyio

CLEANUP_FLOOR = 0.5  # seconds a clean-up gets even when the enclosing deadline has passed


def cleanup_budget(timeout: float) -> float:
    """Seconds a clean-up may take: ``timeout``, or less when the enclosing deadline is near."""
    deadline = anyio.current_effective_deadline()  # -inf once the enclosing scope is cancelled
    left = deadline - anyio.current_time() if math.isfinite(deadline) else deadline
    return min(timeout, max(left, CLEANUP_FLOOR))


def cleanup_scope(timeout: float) -> anyio.CancelScope:
    """A shielded scope that ends after :func:`cleanup_budget` seconds."""
    return anyio.move_on_after(cleanup_budget(timeout), shield=True)

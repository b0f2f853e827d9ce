"""Clean-up budgets: their own timeout, cut to the enclosing deadline, never below a floor."""

from __future__ import annotations

import anyio

from runtime.transport.cleanup import CLEANUP_FLOOR, cleanup_budget


async def test_without_a_deadline_a_cleanup_gets_its_timeout() -> None:
    """No enclosing deadline: the clean-up's own timeout applies."""
    assert cleanup_budget(7.0) == 7.0


async def test_an_enclosing_deadline_cuts_the_budget() -> None:
    """A shutdown deadline closer than the timeout bounds the clean-up."""
    with anyio.move_on_after(2.0):  # noqa: ASYNC100 - only its deadline is read
        assert CLEANUP_FLOOR <= cleanup_budget(60.0) <= 2.0


async def test_after_cancellation_a_cleanup_gets_the_floor() -> None:
    """Once the enclosing scope is cancelled, a clean-up still gets a short moment."""
    with anyio.CancelScope() as scope:  # noqa: ASYNC100 - only its state is read
        scope.cancel()
        assert cleanup_budget(60.0) == CLEANUP_FLOOR

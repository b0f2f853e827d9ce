"""How a lease holder judges its lease, by its own monotonic clock."""

from __future__ import annotations

import time

from runtime.ownership.leases import Lease


def test_a_lease_is_trusted_only_between_its_grace_and_its_deadline() -> None:
    """Before trusted_from and after valid_until the holder may not answer from its state."""
    now = time.monotonic()
    assert Lease("user", 0, 1, valid_until=now + 5).valid()
    assert not Lease("user", 0, 1, valid_until=now - 0.001).valid()
    graced = Lease("user", 0, 1, valid_until=now + 5, trusted_from=now + 2)
    assert graced.held() and not graced.valid()


def test_a_lost_lease_is_neither_held_nor_valid() -> None:
    """Once marked lost (taken over, released) a lease is never trusted again."""
    lease = Lease("user", 0, 1, valid_until=time.monotonic() + 5, lost=True)
    assert not lease.held() and not lease.valid()

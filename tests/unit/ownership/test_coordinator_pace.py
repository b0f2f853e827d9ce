"""How soon a coordinator runs its next round."""

from __future__ import annotations

import time
from typing import Any

from runtime.ownership.coordinator import HANDOVER_POLL, Coordinator
from runtime.ownership.leases import Lease


def coordinator() -> Coordinator:
    unused: Any = None  # the pace needs neither the bucket nor the partition server
    return Coordinator(bucket=unused, aggregates=["user"], server=unused)


def test_rounds_follow_the_renewal_period_while_nothing_is_awaited() -> None:
    """With its leases fresh and no partition to wait for, the next round is a period away."""
    c = coordinator()
    c.held[("user", 0)] = Lease("user", 0, 1, valid_until=time.monotonic() + 10)
    assert c._next_wait(3.0) == 3.0


def test_rounds_quicken_while_a_partition_is_being_handed_over() -> None:
    """While another worker still holds a partition this one should own, it tries every 0.25 s."""
    c = coordinator()
    c.awaited = 1
    assert c._next_wait(3.0) == HANDOVER_POLL == 0.25

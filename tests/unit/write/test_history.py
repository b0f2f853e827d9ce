"""Past states without NATS: folding prefixes of commits, and diffs."""

from __future__ import annotations

from decimal import Decimal

from runtime.wire.envelope import Commit, StoredEvent
from runtime.write.history import diff_states, fold_until
from tests.commits import make_commit
from tests.integration.ledger import Ledger, make_ledger


def commit(seq: int, version: int, *amounts: int) -> Commit:
    events = [StoredEvent("ledger.posted.v1", {"amount": a, "memo": ""}) for a in amounts]
    return make_commit("ledger", "l-1", "post", version, *events, command_id=f"c{seq}", seq=seq)


COMMITS = [commit(3, 1, 5), commit(8, 4, 1, 2, 3), commit(9, 5, 10)]


def test_a_version_inside_a_commit_stops_half_way_through_it() -> None:
    """Version 2 is the first commit plus the first event of the second."""
    past = fold_until(make_ledger(), "l-1", COMMITS, version=2)
    assert (past.version, past.seq, past.state.balance) == (2, 8, 6)


def test_version_zero_is_the_empty_state() -> None:
    """Nothing folded: the initial state, no sequence."""
    past = fold_until(make_ledger(), "l-1", COMMITS, version=0)
    assert (past.version, past.seq, past.state) == (0, 0, Ledger())


def test_without_a_version_every_event_is_folded() -> None:
    """All commits: the current state and the newest commit's sequence."""
    past = fold_until(make_ledger(), "l-1", COMMITS)
    assert (past.version, past.seq, past.state.balance) == (5, 9, 21)


def test_a_diff_lists_only_the_fields_that_changed() -> None:
    """diff_states compares wire forms field by field, nested objects by their fields."""
    before = {"status": "paid", "total": Decimal("1.0"), "address": {"city": "Bern", "zip": "1"}}
    after = {"status": "shipped", "total": Decimal("1.0"), "address": {"city": "Genf", "zip": "1"}}
    assert [c.to_wire() for c in diff_states(before, after)] == [
        {"path": "address.city", "before": "Bern", "after": "Genf"},
        {"path": "status", "before": "paid", "after": "shipped"},
    ]

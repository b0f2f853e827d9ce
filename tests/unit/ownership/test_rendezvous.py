"""Rendezvous hashing with bounded loads: every member agrees, shares are even, few moves."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from runtime.ownership.rendezvous import assign


def owners(members: list[str], partitions: int = 64) -> dict[int, str]:
    return assign(members, "user", partitions)


def test_every_member_computes_the_same_owner_whatever_the_order() -> None:
    """The owners do not depend on the order the member list arrives in."""
    assert owners(["a", "b", "c"]) == owners(["c", "a", "b"])


@given(
    st.sets(st.text("abcdef0123456789", min_size=12, max_size=12), min_size=1, max_size=9),
    st.integers(1, 64),
)
def test_every_partition_has_one_owner_and_no_member_more_than_its_share(
    members: set[str], partitions: int
) -> None:
    """Each partition is owned, and the members' shares differ by one partition at most."""
    assigned = assign(members, "user", partitions)
    assert sorted(assigned) == list(range(partitions))
    loads = [list(assigned.values()).count(m) for m in members]
    assert max(loads) == math.ceil(partitions / len(members))
    assert min(loads) == partitions // len(members)


def test_sixteen_partitions_spread_evenly_over_three_workers() -> None:
    """16 partitions over three workers come out 6, 5 and 5 (plain rendezvous gave 9, 4, 3)."""
    members = ["4822b79166ca", "0b87dc47a285", "d333b10ed7d3"]
    loads = sorted(list(assign(members, "benchacct", 16).values()).count(m) for m in members)
    assert loads == [5, 5, 6]


def test_a_joining_member_moves_few_partitions_and_gets_its_share() -> None:
    """When a fourth member joins, it gets about a quarter and few others move."""
    before, after = owners(["a", "b", "c"]), owners(["a", "b", "c", "d"])
    moved = [p for p in before if before[p] != after[p]]
    assert list(after.values()).count("d") == 16
    assert len(moved) <= 24


def test_a_leaving_member_moves_its_own_partitions_and_few_others() -> None:
    """When a member leaves, its partitions move, and few of the others'."""
    before, after = owners(["a", "b", "c"]), owners(["a", "c"])
    moved = [p for p in before if before[p] != after[p]]
    mine = [p for p in before if before[p] == "b"]
    assert set(mine) <= set(moved)
    assert len(moved) - len(mine) <= 8


def test_no_members_own_nothing() -> None:
    """With no live member there is no owner."""
    assert assign([], "user", 16) == {}

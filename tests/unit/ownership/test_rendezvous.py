"""Rendezvous hashing: every member agrees, and a join or leave moves few partitions."""

from __future__ import annotations

from runtime.ownership.rendezvous import choose


def owners(members: list[str], partitions: int = 64) -> dict[int, str | None]:
    return {p: choose(members, "user", p) for p in range(partitions)}


def test_every_member_computes_the_same_owner_whatever_the_order() -> None:
    """The owner does not depend on the order the member list arrives in."""
    assert owners(["a", "b", "c"]) == owners(["c", "a", "b"])


def test_a_joining_member_takes_partitions_only_for_itself() -> None:
    """When a fourth member joins, only partitions it wins change owner, about a quarter."""
    before, after = owners(["a", "b", "c"]), owners(["a", "b", "c", "d"])
    moved = [p for p in before if before[p] != after[p]]
    assert all(after[p] == "d" for p in moved)
    assert 4 <= len(moved) <= 32


def test_a_leaving_member_moves_only_its_own_partitions() -> None:
    """When a member leaves, only the partitions it owned change owner."""
    before, after = owners(["a", "b", "c"]), owners(["a", "c"])
    assert all(before[p] == "b" for p in before if before[p] != after[p])


def test_no_members_own_nothing() -> None:
    """With no live member there is no owner."""
    assert choose([], "user", 0) is None

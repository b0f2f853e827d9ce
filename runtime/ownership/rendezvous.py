"""Rendezvous (highest random weight) hashing: which live member should own a partition.

Every member computes the same answer from the same member list, with no coordination; when a
member joins or leaves, only the partitions it wins or held move (about 1/N of them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any


def weight(member: str, aggregate: str, partition: int) -> int:
    digest = hashlib.blake2b(f"{member}/{aggregate}/{partition}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def choose(members: Iterable[str], aggregate: str, partition: int) -> str | None:
    """The member that should own ``partition`` of ``aggregate`` (None: no members)."""
    return max(members, key=lambda m: (weight(m, aggregate, partition), m), default=None)


def serving_members(members: Mapping[str, Mapping[str, Any]], aggregate: str) -> set[str]:
    """The members whose announcement lists ``aggregate`` among the types they serve."""
    return {
        member for member, info in members.items() if aggregate in (info.get("aggregates") or ())
    }

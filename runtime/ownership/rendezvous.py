"""Rendezvous (highest random weight) hashing with bounded loads: who owns which partition.

Every member computes the same answer from the same member list, with no coordination. Plain
rendezvous hashing moves only the partitions a joining member wins or a leaving one held, but
with few partitions its shares are uneven: 16 partitions over 3 workers came out 9, 4 and 3,
so one worker took 56 % of the commands and three workers were slower than one. So shares are
bounded: the (partition, member) pairs are taken in order of weight, and a partition goes to
the first member that wants it and is not full, each member holding ``partitions // members``
or one more. A join or leave then also moves a few partitions between the other members, to
keep the shares even.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any


def weight(member: str, aggregate: str, partition: int) -> int:
    digest = hashlib.blake2b(f"{member}/{aggregate}/{partition}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign(members: Iterable[str], aggregate: str, partitions: int) -> dict[int, str]:
    """Each partition's owner among ``members`` (empty: no members). Every member owns
    ``partitions // len(members)`` partitions or one more, and only ``partitions % len(members)``
    of them own one more: 16 over 3 is 6, 5 and 5."""
    live = sorted(set(members))
    if not live:
        return {}
    base, extra = divmod(partitions, len(live))
    ranked = sorted(
        ((weight(m, aggregate, p), m, p) for m in live for p in range(partitions)), reverse=True
    )
    owners: dict[int, str] = {}
    load = dict.fromkeys(live, 0)
    for _, member, partition in ranked:
        if partition in owners or load[member] > base:
            continue
        if load[member] == base:
            if not extra:
                continue
            extra -= 1
        owners[partition] = member
        load[member] += 1
    return owners


def serving_members(members: Mapping[str, Mapping[str, Any]], aggregate: str) -> set[str]:
    """The members whose announcement lists ``aggregate`` among the types they serve."""
    return {
        member for member, info in members.items() if aggregate in (info.get("aggregates") or ())
    }

"""The command partition function, and the mapping the servers get."""

from __future__ import annotations

import pytest

from runtime.wire.partitions import (
    command_mapping,
    fnv1a32,
    partition_of,
    partition_subject,
    split_partitioned,
)


def test_fnv1a32_matches_the_reference_values() -> None:
    """FNV-1a 32 gives the published test vectors (the server uses the same function)."""
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C
    assert fnv1a32(b"foobar") == 0xBF9CF968


def test_a_partition_concatenates_aggregate_and_id() -> None:
    """The partition is FNV-1a of aggregate name and id concatenated, modulo the count."""
    assert partition_of(16, "order", "42") == fnv1a32(b"order42") % 16
    assert {partition_of(16, "user", f"u-{n}") for n in range(500)} == set(range(16))


def test_the_mapping_partitions_on_the_aggregate_and_id_tokens() -> None:
    """The server mapping names the partition count and the first two wildcard tokens."""
    assert command_mapping(8) == {
        "cmd.*.*.*": "cmd.{{partition(8,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}"
    }
    with pytest.raises(ValueError, match="partition count"):
        command_mapping(0)


def test_partitioned_subjects_round_trip() -> None:
    """A partition's subscription subject and a mapped subject's parts agree."""
    assert partition_subject(3, "user") == "cmd.3.user.*.*"
    assert split_partitioned("cmd.3.user.u-1.create") == (3, "user", "u-1", "create")

"""Command partitions: the server's subject mapping and the same function in Python.

nats-server rewrites every request on ``cmd.<aggregate>.<id>.<command>`` to
``cmd.<p>.<aggregate>.<id>.<command>``, where ``p`` is FNV-1a 32 of the aggregate name and id
concatenated, modulo the partition count (``partition(N,1,2)`` in the mapping). Clients keep
sending to the unmapped subject; a worker subscribes to the partitions it owns. Computing the same
function here lets a worker check the server's mapping and lets tools say where a command goes.
"""

from __future__ import annotations

from .naming import COMMAND_PREFIX

DEFAULT_PARTITIONS = 16
MAX_PARTITIONS = 1024

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a32(data: bytes) -> int:
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return value


def partition_of(partitions: int, aggregate: str, aggregate_id: str) -> int:
    """The partition nats-server's mapping sends ``cmd.<aggregate>.<aggregate_id>.*`` to."""
    return fnv1a32((aggregate + aggregate_id).encode()) % partitions


def check_partitions(partitions: int) -> int:
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ValueError(f"the partition count must be 1..{MAX_PARTITIONS}, got {partitions}")
    return partitions


def command_mapping(partitions: int) -> dict[str, str]:
    """The nats-server ``mappings`` entry that partitions commands (one source, one target)."""
    check_partitions(partitions)
    return {
        f"{COMMAND_PREFIX}.*.*.*": (
            f"{COMMAND_PREFIX}.{{{{partition({partitions},1,2)}}}}"
            ".{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}"
        )
    }


def partition_subject(partition: int, aggregate: str) -> str:
    """What the owner of ``partition`` of ``aggregate`` subscribes to."""
    return f"{COMMAND_PREFIX}.{partition}.{aggregate}.*.*"


def split_partitioned(subject: str) -> tuple[int, str, str, str]:
    """``cmd.<p>.<aggregate>.<id>.<command>`` as (p, aggregate, id, command)."""
    _, partition, aggregate, aggregate_id, command = subject.split(".", 4)
    return int(partition), aggregate, aggregate_id, command


def unpartitioned(subject: str) -> str | None:
    """The subject a client sent that the server mapped to the partitioned ``subject``
    (``cmd.<p>.<aggregate>.<id>.<command>`` -> ``cmd.<aggregate>.<id>.<command>``), else None."""
    tokens = subject.split(".")
    if len(tokens) == 5 and tokens[0] == COMMAND_PREFIX and tokens[1].isdigit():
        return ".".join((tokens[0], *tokens[2:]))
    return None

"""The compact memory of an aggregate's last commands."""

from __future__ import annotations

import gc

from runtime.write.command_memory import CommandMemory


def test_it_remembers_the_last_commands_and_forgets_older_ones() -> None:
    """With capacity 4, the last four command ids are found with their sequences, older not."""
    memory = CommandMemory(4)
    for n in range(1, 7):
        memory.remember(f"c-{n}", n * 10)
    assert [memory.lookup(f"c-{n}", 60) for n in range(1, 7)] == [None, None, 30, 40, 50, 60]
    assert len(memory) == 4


def test_sequences_beyond_32_bits_come_back_whole() -> None:
    """Only the low 32 bits are stored; the full sequence is rebuilt from the last one."""
    memory = CommandMemory(8)
    memory.remember("old", 2**32 + 5)
    assert memory.lookup("old", 2**32 + 900) == 2**32 + 5


def test_it_round_trips_through_its_snapshot_form_oldest_first() -> None:
    """entries() lists (hash, sequence) oldest first, and of() rebuilds the same memory."""
    memory = CommandMemory(3)
    for n in range(1, 6):
        memory.remember(f"c-{n}", n)
    entries = list(memory.entries(5))
    assert [seq for _, seq in entries] == [3, 4, 5]
    again = CommandMemory.of(3, entries)
    assert [again.lookup(f"c-{n}", 5) for n in (2, 3, 5)] == [None, 3, 5]


def test_a_small_aggregate_pays_for_what_it_did() -> None:
    """The ring grows with the commands, so one command costs 8 bytes, not 256 slots."""
    memory = CommandMemory(256)
    memory.remember("only", 1)
    assert len(memory.ring) == 8


def test_a_hash_matching_a_sequence_field_is_not_a_hit() -> None:
    """A hash equal to a stored sequence's bytes (or straddling two fields) is not found."""
    memory = CommandMemory(4)
    memory.add(0x01020304, 0x0A0B0C0D)
    memory.add(0x11121314, 0x1A1B1C1D)
    assert memory.find(0x0A0B0C0D, 0x1A1B1C1D) is None
    assert memory.find(0x14_0A0B0C, 0x1A1B1C1D) is None  # the low bytes of one, then the next
    assert memory.find(0x11121314, 0x1A1B1C1D) == 0x1A1B1C1D


def test_the_memory_is_invisible_to_the_garbage_collector() -> None:
    """Its entries are one untracked buffer, so many aggregates add no work to full collections."""
    memory = CommandMemory(256)
    for n in range(300):
        memory.remember(f"c-{n}", n)
    assert not gc.is_tracked(memory.ring)

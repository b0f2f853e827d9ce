"""The compact memory of an aggregate's last commands, for retries the stream cannot dedupe.

Inside the stream's duplicate window a retried command needs no memory: JetStream answers the
append with the original commit's sequence. Beyond it (or when the retry decides nothing, so it
never reaches the stream), the actor looks the command id up here. Each entry is 8 bytes: a
32-bit hash of the command id and the low 32 bits of its commit's stream sequence (the full
sequence is the newest one at or below the aggregate's last sequence with those low bits). The
entries live in one ``bytearray``, searched with ``bytearray.find``: the lookup, made for every
command, is a C-speed scan (1 us over 256 entries, where ``x in array`` takes 5 us), the
memory grows only as commands arrive, so a small aggregate pays for what it did and a busy one at
most ``capacity * 8`` bytes (2 KiB for 256), and a bytearray is not an object the garbage
collector has to visit, which keeps its full collections short with many aggregates in memory.
A hit is a hint that the caller verifies by reading the commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..wire.idempotency import id_hash

LOW32 = 0xFFFFFFFF
ENTRY = 8  # bytes: the hash, then the sequence's low 32 bits, both little-endian


class CommandMemory:
    """A ring of (command id hash, commit sequence) pairs, oldest overwritten first."""

    __slots__ = ("capacity", "head", "ring")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.ring = bytearray()
        self.head = 0  # the entry overwritten next once the ring is full

    def __len__(self) -> int:
        return len(self.ring) // ENTRY

    def remember(self, command_id: str, seq: int) -> None:
        self.add(id_hash(command_id), seq)

    def add(self, hashed: int, seq: int) -> None:
        entry = hashed.to_bytes(4, "little") + (seq & LOW32).to_bytes(4, "little")
        if len(self.ring) < self.capacity * ENTRY:
            self.ring += entry
            return
        at = self.head * ENTRY
        self.ring[at : at + ENTRY] = entry
        self.head = (self.head + 1) % self.capacity

    def lookup(self, command_id: str, last_seq: int) -> int | None:
        """The commit sequence remembered for ``command_id`` (a hint), or None."""
        return self.find(id_hash(command_id), last_seq)

    def find(self, hashed: int, last_seq: int) -> int | None:
        """The commit sequence remembered for a command id hash (a hint), or None."""
        ring, key = self.ring, hashed.to_bytes(4, "little")
        at = ring.find(key)
        while at % ENTRY:  # a match across two fields; -1 % 8 is 7, so a miss loops too
            if at == -1:
                return None
            at = ring.find(key, at + 1)
        low = int.from_bytes(ring[at + 4 : at + ENTRY], "little")
        return last_seq - ((last_seq - low) & LOW32)

    def entries(self, last_seq: int) -> Iterator[tuple[int, int]]:
        """(hash, full sequence) pairs, oldest first, for the snapshot."""
        count = len(self)
        for i in (*range(self.head, count), *range(self.head)):
            hashed = int.from_bytes(self.ring[i * ENTRY : i * ENTRY + 4], "little")
            low = int.from_bytes(self.ring[i * ENTRY + 4 : (i + 1) * ENTRY], "little")
            yield hashed, last_seq - ((last_seq - low) & LOW32)

    @classmethod
    def of(cls, capacity: int, entries: Iterable[tuple[int, int]]) -> CommandMemory:
        memory = cls(capacity)
        for hashed, seq in entries:
            memory.add(hashed, seq)
        return memory

"""The compact memory of an aggregate's last commands, for retries the stream cannot dedupe.

Inside the stream's duplicate window a retried command needs no memory: JetStream answers the
append with the original commit's sequence. Beyond it (or when the retry decides nothing, so it
never reaches the stream), the actor looks the command id up here. Each entry is 8 bytes: a
32-bit hash of the command id and the low 32 bits of its commit's stream sequence (the full
sequence is the newest one at or below the aggregate's last sequence with those low bits). Two
``array`` columns keep the lookup a C-speed scan and grow only as commands arrive, so a small
aggregate pays for what it did and a busy one at most ``capacity * 8`` bytes (2 KiB for 256).
A hit is a hint that the caller verifies by reading the commit.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator

from ..wire.idempotency import id_hash

LOW32 = 0xFFFFFFFF


class CommandMemory:
    """A ring of (command id hash, commit sequence) pairs, oldest overwritten first."""

    __slots__ = ("capacity", "hashes", "head", "seqs")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.hashes = array("I")
        self.seqs = array("I")
        self.head = 0  # where the next entry goes once the ring is full

    def __len__(self) -> int:
        return len(self.hashes)

    def remember(self, command_id: str, seq: int) -> None:
        self.add(id_hash(command_id), seq)

    def add(self, hashed: int, seq: int) -> None:
        if len(self.hashes) < self.capacity:
            self.hashes.append(hashed)
            self.seqs.append(seq & LOW32)
            return
        self.hashes[self.head] = hashed
        self.seqs[self.head] = seq & LOW32
        self.head = (self.head + 1) % self.capacity

    def lookup(self, command_id: str, last_seq: int) -> int | None:
        """The commit sequence remembered for ``command_id`` (a hint), or None."""
        return self.find(id_hash(command_id), last_seq)

    def find(self, hashed: int, last_seq: int) -> int | None:
        """The commit sequence remembered for a command id hash (a hint), or None."""
        if hashed not in self.hashes:
            return None
        low = self.seqs[self.hashes.index(hashed)]
        return last_seq - ((last_seq - low) & LOW32)

    def entries(self, last_seq: int) -> Iterator[tuple[int, int]]:
        """(hash, full sequence) pairs, oldest first, for the snapshot."""
        order = list(range(self.head, len(self.hashes))) + list(range(self.head))
        for i in order:
            yield self.hashes[i], last_seq - ((last_seq - self.seqs[i]) & LOW32)

    @classmethod
    def of(cls, capacity: int, entries: Iterable[tuple[int, int]]) -> CommandMemory:
        memory = cls(capacity)
        for hashed, seq in entries:
            memory.add(hashed, seq)
        return memory

"""The actor's handling of unknown append outcomes, against an in-memory store (no NATS)."""

from __future__ import annotations

from typing import Any

import pytest
from msgspec.structs import replace

from runtime.errors import Timeout
from runtime.wire.envelope import Commit
from runtime.write.actor import Actor, CommandRequest, HostStats

from ...integration.support import counter


class FlakyStore:
    """An event store whose next append times out, having stored the commit or not."""

    def __init__(self, *, lands: bool) -> None:
        self.commits: list[Commit] = []
        self.lands = lands
        self.fail_next = True

    async def append(self, commit: Commit, expected_last_seq: int) -> tuple[int, bool]:
        seq = len(self.commits) + 1
        if self.fail_next:
            self.fail_next = False
            if self.lands:
                self.commits.append(replace(commit, seq=seq))
            raise Timeout("JetStream did not acknowledge the commit in time")
        self.commits.append(replace(commit, seq=seq))
        return seq, False

    async def history(
        self, aggregate: str, aggregate_id: str, *, after_seq: int = 0, **_: Any
    ) -> list[Commit]:
        return [c for c in self.commits if c.seq > after_seq]

    async def commit_at(self, aggregate: str, aggregate_id: str, seq: int) -> Commit | None:
        return self.commits[seq - 1]


async def no_reply(result: object) -> None:
    return None


def request(command_id: str) -> CommandRequest:
    return CommandRequest(
        "add", counter.parse_command("add", {"amount": 2}), command_id, command_id, None, no_reply
    )


async def test_a_timed_out_append_that_landed_is_answered_with_its_commit() -> None:
    """When the unacknowledged commit is in the stream, the reply is that commit's."""
    store = FlakyStore(lands=True)
    actor = Actor(counter, "c-1", store)  # type: ignore[arg-type]
    reply = await actor.handle(request("k-1"), 3, HostStats())
    assert (reply["version"], reply["seq"], reply["command_id"]) == (1, 1, "k-1")
    assert actor.state == 2 and len(store.commits) == 1


async def test_a_timed_out_append_that_did_not_land_answers_timeout() -> None:
    """When the commit is not in the stream, the caller gets timeout and the state is unchanged;
    retrying the same command id then applies it once."""
    store = FlakyStore(lands=False)
    actor = Actor(counter, "c-1", store)  # type: ignore[arg-type]
    with pytest.raises(Timeout):
        await actor.handle(request("k-1"), 3, HostStats())
    assert actor.state == 0 and store.commits == []
    reply = await actor.handle(request("k-1"), 3, HostStats())
    assert reply["version"] == 1 and len(store.commits) == 1

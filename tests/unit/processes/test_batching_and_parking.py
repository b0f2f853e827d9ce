"""Pure parts of process manager runs: timer changes reduced over a batch, the park marker,
the partition of a key, and a run's reactions folded into one write."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from nats.aio.msg import Msg

from aggregates.order import StatusUpdated, order
from runtime import ProcessManager, Reaction
from runtime.processes.instances import Instance
from runtime.processes.layout import (
    H_STREAM_SOURCE,
    key_partition,
    original,
    source_seq,
    transform,
)
from runtime.processes.parking import parked_marker
from runtime.processes.reaction import Reactions, compact_timer_ops
from runtime.processes.triggers import event_triggers
from runtime.wire.envelope import H_VERSION, Commit, RawMessage
from runtime.wire.partitions import fnv1a32

NOW = "2026-11-26T12:00:00+00:00"


def test_a_timer_set_and_cancelled_within_a_batch_is_never_scheduled() -> None:
    """Set then cancel of a timer that was not running before the batch leaves nothing to do."""
    ops = [{"op": "set", "name": "due", "id": "t1"}, {"op": "cancel", "name": "due"}]
    assert compact_timer_ops(ops, running={}) == ()


def test_a_cancel_of_a_timer_running_before_the_batch_is_kept() -> None:
    """A timer that ran before the batch and ends cancelled is still purged."""
    ops = [{"op": "set", "name": "due", "id": "t2"}, {"op": "cancel", "name": "due"}]
    assert compact_timer_ops(ops, running={"due": "t1"}) == ({"op": "cancel", "name": "due"},)


def test_the_last_set_of_a_timer_wins() -> None:
    """Two sets of one timer keep only the last (it replaces the schedule anyway)."""
    ops = [{"op": "set", "name": "due", "id": "a"}, {"op": "set", "name": "due", "id": "b"}]
    assert compact_timer_ops(ops, running={}) == ({"op": "set", "name": "due", "id": "b"},)


def test_the_park_marker_keeps_the_first_failure_and_names_the_last_trigger() -> None:
    """The first park records the trigger and its error; later ones only move ``last``."""
    first = parked_marker(None, "e5-0", "boom")
    assert (first["first"], first["last"], first["error"]) == ("e5-0", "e5-0", "boom")
    later = parked_marker(first, "e9-0", "")
    assert (later["first"], later["last"], later["error"]) == ("e5-0", "e9-0", "boom")
    assert parked_marker(later, "e9-0", "") == later


def test_a_key_falls_in_the_partition_the_server_maps_its_aggregate_id_to() -> None:
    """The key's partition is FNV-1a of the id alone, as ``partition(N,2)`` in the transform."""
    assert key_partition("ord-42", 16) == fnv1a32(b"ord-42") % 16
    assert "{{partition(16,2)}}" in transform(16)


def _delivery(reply: str) -> Msg:
    source = "EVENTS 42 > pm.3.order.o-1 events.order.o-1"
    return Msg(None, subject="pm.3.order.o-1", reply=reply, headers={H_STREAM_SOURCE: source})


def test_a_copy_stands_for_the_event_stream_s_message_it_was_sourced_from() -> None:
    for reply in (
        "$JS.ACK.CQRS_PM_EVENTS.cqrs-pm-x-3.1.42.7.1765000000123456789.0",
        "$JS.ACK.hub.ACC123.CQRS_PM_EVENTS.cqrs-pm-x-3.2.42.7.1765000000123456789.5.rnd",
    ):
        msg = _delivery(reply)
        raw = original(msg)
        assert (raw.seq, raw.subject) == (42, "events.order.o-1")
        assert source_seq(msg) == 42


@dataclass(frozen=True)
class Count:
    n: int = 0


def test_each_reaction_of_a_run_gets_the_state_the_one_before_returned() -> None:
    """Within a batch an instance's state goes from reaction to reaction as returned (as an
    actor keeps it), not stored and read back between them; one write stores the last."""
    seen: list[Count] = []
    returned: list[Count] = []
    manager: ProcessManager[Count] = ProcessManager("counting", Count(), follows=[order])

    @manager.on("order.status_updated.v1")
    def updated(state: Count, event: StatusUpdated) -> Reaction[Count]:
        seen.append(state)
        returned.append(Count(state.n + 1))
        return Reaction(returned[-1])

    data = {"status": "paid", "previous": "created", "at": NOW}
    paid = {"type": "order.status_updated.v1", "data": data}
    body = orjson.dumps([paid, paid, paid])
    raw = RawMessage(7, "events.order.o-1", "", {H_VERSION: "3"}, body)
    run = event_triggers(manager, Commit.from_message(raw, keep_encoded=True))
    reactions = Reactions(manager, None, None, None, None)  # type: ignore[arg-type]  # pure part
    handled, changed, after = reactions._fold(Instance(state={"n": 5}, revision=2), run)
    assert (handled, changed) == (3, 3) and after is not None
    assert seen[0] == Count(5) and seen[1] is returned[0] and seen[2] is returned[1]
    assert after.state == {"n": 8} and after.position == (7, 2) and after.revision == 2

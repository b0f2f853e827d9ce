"""A process manager's triggers from a commit whose events are kept encoded (decoded straight
into their classes) are those of the decoded commit: the same keys, events and metas, the same
events ignored, and the same errors for data that does not decode (no NATS)."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest

from aggregates.order import OrderCreated, order
from aggregates.payment_deadline import payment_deadline
from runtime import EventMeta, ProcessManager, Reaction
from runtime.processes.triggers import Trigger, event_triggers
from runtime.wire.envelope import H_CORRELATION_ID, H_TRACEPARENT, H_VERSION, Commit, RawMessage
from tests.unit.domain.test_projection_encoded import CREATED_V1, CREATED_V2, NOW, PAID, UNKNOWN


def by_user() -> ProcessManager[int]:
    """Instances keyed by a field of the event: a key that needs the decoded event."""
    manager: ProcessManager[int] = ProcessManager(
        "by_user", 0, follows=[order], key_of=lambda event, meta: event.user_id
    )

    @manager.on("order.created.v2")
    def created(state: int, event: OrderCreated) -> Reaction[int]:
        return Reaction(state + 1)

    return manager


def triggers(manager: ProcessManager[Any], events: list[Any], *, keep: bool) -> list[Trigger]:
    headers = {H_VERSION: str(len(events)), H_CORRELATION_ID: "c-1", H_TRACEPARENT: "00-ab-cd-01"}
    raw = RawMessage(
        seq=7, subject="events.order.o-1", timestamp="", headers=headers, data=orjson.dumps(events)
    )
    commit = Commit.from_message(raw, keep_encoded=keep)
    if keep:  # the data stays JSON, for the manager to decode straight into its class
        assert all(isinstance(e.data, msgspec.Raw) for e in commit.events)
    return event_triggers(manager, commit)


@pytest.mark.parametrize("manager", [payment_deadline, by_user()], ids=["payment", "by_user"])
@pytest.mark.parametrize(
    "events",
    [
        [CREATED_V2, PAID],
        [CREATED_V1, PAID],  # an upcast type goes the general way
        [CREATED_V2, UNKNOWN, PAID],  # a type without a reaction is ignored either way
        [{**PAID, "data": {"status": "lost", "previous": "created", "at": NOW}}],
        [{**CREATED_V2, "data": {**CREATED_V2["data"], "total": 19.9}}],  # type: ignore[dict-item]
        [{**CREATED_V2, "data": {**CREATED_V2["data"], "user_id": "not an id"}}],  # type: ignore[dict-item]
        [{**CREATED_V2, "data": {**CREATED_V2["data"], "lines": "nope"}}],  # type: ignore[dict-item]
        [{"type": "order.created.v2"}, {"type": "order.status_updated.v1"}],  # no data
    ],
)
def test_encoded_events_trigger_as_decoded_ones(
    manager: ProcessManager[Any], events: list[dict[str, Any]]
) -> None:
    """Every commit body gives the same triggers either way, errors included."""
    decoded = triggers(manager, events, keep=False)
    assert triggers(manager, events, keep=True) == decoded


def test_an_event_that_does_not_decode_is_a_trigger_with_its_error() -> None:
    """Bad data is a trigger carrying the error that says why, not a raise."""
    bad = {**CREATED_V2, "data": {**CREATED_V2["data"], "lines": "nope"}}  # type: ignore[dict-item]
    (trigger,) = triggers(payment_deadline, [bad], keep=True)
    assert trigger.key == "o-1" and "lines" in trigger.error and trigger.event is None
    meta = EventMeta("order", "o-1", 7, 1, "order.created.v2", "", "", "c-1")
    assert trigger.meta == meta and trigger.trace == {H_TRACEPARENT: "00-ab-cd-01"}

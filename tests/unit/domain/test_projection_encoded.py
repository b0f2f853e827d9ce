"""Applying events whose data is still JSON gives what applying the decoded data gives: the
same model, the same events ignored, the same errors (no NATS)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from aggregates.order import order
from projections import orders
from runtime import EventMeta, Projection
from runtime.wire.envelope import encoded_events

NOW = "2026-11-26T12:00:00+00:00"
CREATED_V2 = {
    "type": "order.created.v2",
    "data": {
        "user_id": "u-1",
        "lines": [{"sku": "book", "quantity": 2, "unit_price": "9.95"}],
        "total": "19.90",
        "created_at": NOW,
        "currency": "EUR",
    },
}
CREATED_V1 = {  # read as v2 through the order aggregate's upcaster
    "type": "order.created.v1",
    "data": {k: v for k, v in CREATED_V2["data"].items() if k != "currency"},  # type: ignore[union-attr]
}
PAID = {
    "type": "order.status_updated.v1",
    "data": {"status": "paid", "previous": "created", "at": NOW},
}
UNKNOWN = {"type": "order.audited.v1", "data": {"by": "x"}}


def meta(type_name: str, order_id: str = "o-1") -> EventMeta:
    return EventMeta("order", order_id, 7, 1, type_name, NOW)


def both_ways(projection: Projection[Any], events: list[dict[str, Any]]) -> tuple[Any, Any]:
    """The outcome of applying ``events`` decoded, and encoded: (model, results) or the error."""
    outcomes = []
    for encoded in (False, True):
        model = projection.model_type()
        results: list[Any] = []
        try:
            if encoded:
                stored = encoded_events(orjson.dumps(events))
                assert stored is not None
                for e in stored:
                    results.append(projection.apply_encoded(model, e.type, e.data, meta(e.type)))
            else:
                for e in events:
                    results.append(
                        projection.apply(model, e["type"], e.get("data"), meta(e["type"]))
                    )
        except Exception as exc:
            outcomes.append((type(exc).__name__, str(exc), getattr(exc, "details", None)))
            continue
        outcomes.append((model, results))
    return outcomes[0], outcomes[1]


@pytest.mark.parametrize(
    "events",
    [
        [CREATED_V2, PAID],
        [CREATED_V1, PAID],  # an upcast type goes the general way
        [CREATED_V2, UNKNOWN, PAID],  # a type without a handler is ignored either way
        [PAID],  # the handler raises: the same error either way
        [{**PAID, "data": {"status": "lost", "previous": "created", "at": NOW}}],
        [{**CREATED_V2, "data": {**CREATED_V2["data"], "total": 19.9}}],  # type: ignore[dict-item]
        [{"type": "order.status_updated.v1"}],  # no data
    ],
)
def test_encoded_events_apply_as_decoded_ones(events: list[dict[str, Any]]) -> None:
    """Every commit body applies to the same model, or fails with the same error, either way."""
    decoded, encoded = both_ways(orders, events)
    assert decoded == encoded


@dataclass
class Seen:
    data: list[Any] = field(default_factory=list)


def test_a_handler_without_an_event_class_gets_the_decoded_json() -> None:
    """A projection of an aggregate followed by name only, with an untyped handler, gets the
    event's data as decoded JSON."""
    loose = Projection("loose", Seen, follows=["order"])

    @loose.on("order.status_updated.v1")
    def seen(model: Seen, event, meta: EventMeta) -> None:  # type: ignore[no-untyped-def]
        model.data.append(event)

    decoded, encoded = both_ways(loose, [PAID])
    assert decoded == encoded and decoded[0].data == [PAID["data"]]


def test_a_body_that_is_no_list_of_events_is_left_to_the_general_way() -> None:
    """Bodies that are not lists of typed objects are not decoded here."""
    assert encoded_events(b'{"type": "x"}') is None
    assert encoded_events(b'[{"data": {}}]') is None
    assert encoded_events(b"[1]") is None
    assert encoded_events(b"nope") is None
    assert order.name == "order"  # the aggregate the bodies above belong to

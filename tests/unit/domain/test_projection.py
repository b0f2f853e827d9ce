"""Given/then specs of the example read models and of the projection definition API (no NATS)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from aggregates.order import Line, OrderCancelled, OrderCreated, Status, StatusUpdated, order
from aggregates.user import EmailUpdated, Role, RoleChanged, UserCreated, user
from projections import orders, users
from runtime import EventMeta, InvalidInput, Projection, SchemaError
from runtime.testing import FIXED_NOW, ProjectionSpec
from runtime.wire.envelope import StoredEvent

from ...commits import make_commit


def created(user_id: str = "u-1", price: str = "19.90", quantity: int = 2) -> OrderCreated:
    return OrderCreated(
        user_id=user_id,
        lines=(Line("book", quantity, Decimal(price)),),
        total=Decimal(price) * quantity,
        created_at=FIXED_NOW,
        currency="EUR",
    )


def moved(status: Status, previous: Status) -> StatusUpdated:
    return StatusUpdated(status=status, previous=previous, at=FIXED_NOW)


def three_orders() -> ProjectionSpec[Any]:
    return (
        ProjectionSpec(orders)
        .given("order", "ord-1", created())
        .given("order", "ord-2", created(), moved(Status.PAID, Status.CREATED))
        .given("order", "ord-3", created("u-2"))
    )


# -- orders ---------------------------------------------------------------------------------------


def test_an_order_is_answered_by_id_with_its_exact_total() -> None:
    """get_order_by_id answers the row, with the total as the exact decimal string."""
    three_orders().then_query(
        "get_order_by_id",
        {"order_id": "ord-1"},
        lambda r: r["total"] == "39.80" and r["status"] == "created" and r["currency"] == "EUR",
    )


def test_status_changes_and_cancellation_update_the_row() -> None:
    """A status update and a cancellation show in the row, with the cancellation's reason."""
    spec = three_orders().given(
        "order",
        "ord-1",
        OrderCancelled(reason="changed my mind", previous=Status.CREATED, at=FIXED_NOW),
    )
    spec.then_query("get_order_by_id", {"order_id": "ord-2"}, lambda r: r["status"] == "paid")
    spec.then_query(
        "get_order_by_id",
        {"order_id": "ord-1"},
        lambda r: r["status"] == "cancelled" and r["cancel_reason"] == "changed my mind",
    )


def test_an_unknown_order_is_not_found() -> None:
    """Asking for an order that was never created fails with not_found."""
    three_orders().then_query_fails("get_order_by_id", {"order_id": "nope"}, code="not_found")


def test_orders_of_a_user_are_listed_newest_first() -> None:
    """get_orders_for_user lists only that user's orders, newest first, with their count."""
    answer = three_orders().query("get_orders_for_user", {"user_id": "u-1"})
    assert [o["order_id"] for o in answer["orders"]] == ["ord-2", "ord-1"]
    assert answer["total"] == 2


def test_orders_of_a_user_filter_by_status() -> None:
    """The status filter keeps only the orders in that status."""
    answer = three_orders().query("get_orders_for_user", {"user_id": "u-1", "status": "paid"})
    assert [o["order_id"] for o in answer["orders"]] == ["ord-2"]


def test_orders_of_a_user_are_paged() -> None:
    """limit and offset select a page; total counts every match."""
    spec = ProjectionSpec(orders)
    for i in range(7):
        spec.given("order", f"ord-{i}", created())
    answer = spec.query("get_orders_for_user", {"user_id": "u-1", "limit": 3, "offset": 3})
    assert [o["order_id"] for o in answer["orders"]] == ["ord-3", "ord-2", "ord-1"]
    assert answer["total"] == 7


def test_a_user_without_orders_gets_an_empty_list() -> None:
    """A user nobody ordered for has no orders, not an error."""
    answer = three_orders().query("get_orders_for_user", {"user_id": "u-9"})
    assert answer["orders"] == [] and answer["total"] == 0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"user_id": "u-1", "limit": 0}, "limit"),
        ({"user_id": "u-1", "limit": 501}, "limit"),
        ({"user_id": "u-1", "offset": -1}, "offset"),
        ({"user_id": "u-1", "limit": "ten"}, "limit"),
        ({"user_id": "u-1", "status": "lost"}, "status"),
        ({"user_id": 42}, "user_id"),
        ({}, "user_id"),
        ({"user_id": "u-1", "colour": "red"}, "colour"),
    ],
)
def test_bad_paging_arguments_are_invalid(args: dict[str, Any], field: str) -> None:
    """Out-of-range, wrongly typed, missing and unknown arguments are invalid, naming the field."""
    error = three_orders().then_query_fails("get_orders_for_user", args, code="invalid")
    assert error.details["field"] == field


def test_an_unknown_query_is_unknown_query() -> None:
    """A query the projection does not define fails with unknown_query, listing the known."""
    error = three_orders().then_query_fails("get_everything", {}, code="unknown_query")
    assert "get_order_by_id" in error.details["known"]


def test_an_old_event_version_is_upcast_before_the_handler_sees_it() -> None:
    """An order.created.v1 (before currencies) is read as v2 in euros."""
    v1 = {
        "user_id": "u-1",
        "lines": [{"sku": "a", "quantity": 1, "unit_price": "5.00"}],
        "total": "5.00",
        "created_at": FIXED_NOW.isoformat(),
    }
    spec = ProjectionSpec(orders).given("order", "ord-1", ("order.created.v1", v1))
    spec.then_query("get_order_by_id", {"order_id": "ord-1"}, lambda r: r["currency"] == "EUR")


def test_an_event_type_without_handler_is_ignored() -> None:
    """An event type the projection has no handler for changes nothing and is no error."""
    spec = three_orders().given("order", "ord-1", ("order.gift_wrapped.v1", {"paper": "red"}))
    assert spec.handled == 4
    spec.then_query("get_order_by_id", {"order_id": "ord-1"}, lambda r: r["status"] == "created")


def test_an_event_that_does_not_decode_is_a_schema_error() -> None:
    """Data that does not fit its event class fails with a SchemaError naming the type."""
    with pytest.raises(SchemaError, match=r"order\.status_updated\.v1"):
        three_orders().given("order", "ord-1", ("order.status_updated.v1", {"status": 7}))


def test_a_change_to_an_unknown_order_is_an_error() -> None:
    """A status update of an order never created fails instead of inventing a row."""
    with pytest.raises(LookupError):
        ProjectionSpec(orders).given("order", "ord-1", moved(Status.PAID, Status.CREATED))


# -- users ----------------------------------------------------------------------------------------


def ada() -> ProjectionSpec[Any]:
    return ProjectionSpec(users).given(
        "user", "u-1", UserCreated(name="Ada", email="ada@example.com", role=Role.CUSTOMER)
    )


def test_a_user_is_answered_by_id() -> None:
    """get_user_by_id answers the user's row."""
    ada().then_query("get_user_by_id", {"user_id": "u-1"}, lambda r: r["name"] == "Ada")


def test_a_user_is_found_by_email_whatever_its_case() -> None:
    """find_user_by_email matches the normalised address."""
    ada().then_query(
        "find_user_by_email", {"email": " ADA@example.com"}, lambda r: r["user_id"] == "u-1"
    )


def test_a_changed_email_moves_the_index() -> None:
    """After an email change the new address finds the user and the old one does not."""
    spec = ada().given(
        "user", "u-1", EmailUpdated(email="ada@lovelace.dev", previous="ada@example.com")
    )
    spec.then_query(
        "find_user_by_email", {"email": "ada@lovelace.dev"}, lambda r: r["user_id"] == "u-1"
    )
    spec.then_query_fails("find_user_by_email", {"email": "ada@example.com"}, code="not_found")


def test_a_role_change_shows() -> None:
    """A role change updates the row's role."""
    spec = ada().given("user", "u-1", RoleChanged(role=Role.ADMIN, previous=Role.CUSTOMER))
    spec.then_query("get_user_by_id", {"user_id": "u-1"}, lambda r: r["role"] == "admin")


def test_a_shared_address_finds_its_first_holder() -> None:
    """Two users with one address: the one who has held it longest is found."""
    spec = ada().given(
        "user", "u-2", UserCreated(name="Bob", email="ada@example.com", role=Role.SUPPORT)
    )
    spec.then_query(
        "find_user_by_email", {"email": "ada@example.com"}, lambda r: r["user_id"] == "u-1"
    )


# -- the definition API ---------------------------------------------------------------------------


@dataclass
class Tally:
    seen: list[str] = field(default_factory=list)


def test_a_handler_gets_the_event_meta() -> None:
    """A three-parameter handler gets where its event comes from."""
    tally = Projection("tally", Tally, follows=[order])

    @tally.on("order.created.v2")
    def on_created(model: Tally, event: OrderCreated, meta: EventMeta) -> None:
        model.seen.append(f"{meta.aggregate}/{meta.aggregate_id}@{meta.seq}v{meta.version}")

    spec = ProjectionSpec(tally).given("order", "o-1", created()).given("order", "o-2", created())
    assert spec.model.seen == ["order/o-1@1v1", "order/o-2@2v1"]


def test_commits_replay_with_their_sequences() -> None:
    """given_commits applies every event of each commit with the commit's sequence."""
    tally = Projection("tally", Tally, follows=["ledger"])

    @tally.on("ledger.booked.v1")
    def booked(model: Tally, event: dict[str, Any], meta: EventMeta) -> None:
        model.seen.append(f"{event['amount']}@{meta.seq}v{meta.version}")

    commit = make_commit(
        "ledger",
        "l-1",
        "book",
        2,
        StoredEvent("ledger.booked.v1", {"amount": 1}),
        StoredEvent("ledger.booked.v1", {"amount": 2}),
        recorded_at=FIXED_NOW.isoformat(),
        seq=42,
    )
    assert ProjectionSpec(tally).given_commits([commit]).model.seen == ["1@42v1", "2@42v2"]


def test_a_query_without_arguments_refuses_some() -> None:
    """A query declared without arguments answers {} and refuses any argument."""
    tally = Projection("tally", Tally, follows=[user])

    @tally.query("count")
    def count(model: Tally) -> int:
        return len(model.seen)

    spec = ProjectionSpec(tally)
    assert spec.query("count", {}) == 0
    spec.then_query_fails("count", {"x": 1}, code="invalid")


def test_definitions_are_checked() -> None:
    """Bad names, policies, duplicate handlers and empty follows fail when defined."""
    with pytest.raises(InvalidInput, match="projection must match"):
        Projection("Bad-Name", Tally, follows=[order])
    with pytest.raises(ValueError, match="on_poison"):
        Projection("p", Tally, follows=[order], on_poison="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="follow"):
        Projection("p", Tally, follows=[])
    p = Projection("p", Tally, follows=[order])
    p.on("order.created.v2")(lambda model, event: None)
    with pytest.raises(ValueError, match="two handlers"):
        p.on("order.created.v2")(lambda model, event: None)
    with pytest.raises(ValueError):
        p.on("order.created")(lambda model, event: None)


def test_a_projection_lists_its_subjects_and_queries() -> None:
    """Subjects are the followed aggregates' event subjects; queries are sorted names."""
    assert orders.subjects() == ["events.order.>"]
    assert orders.queries == ["get_order_by_id", "get_orders_for_user"]

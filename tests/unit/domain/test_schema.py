"""Upcasters and renames: older stored event versions read as the current one, purely."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from aggregates.order import OrderCreated, order
from runtime import Aggregate, SchemaError
from runtime.testing import AggregateSpec


@dataclass(frozen=True, slots=True)
class Renamed:
    name: str
    title: str
    rank: int


@dataclass(frozen=True, slots=True)
class Profile:
    name: str = ""
    title: str = ""
    rank: int = 0


def make_profile() -> Aggregate[Profile]:
    """A profile whose ``profile.renamed`` went v1 -> v2 -> v3 and was once ``person.named``."""
    profile: Aggregate[Profile] = Aggregate("profile", Profile())

    @profile.event("profile.renamed.v3")
    def renamed(state: Profile, event: Renamed) -> Profile:
        return Profile(event.name, event.title, event.rank)

    @profile.upcaster("profile.renamed.v1")
    def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {"name": data.pop("full_name"), **data, "title": ""}

    @profile.upcaster("profile.renamed.v2")
    def v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "rank": 1}

    profile.renamed("person.named.v1", "profile.renamed.v1")
    return profile


def test_a_chain_of_upcasters_runs_in_order() -> None:
    """v1 data goes through v1 -> v2 and v2 -> v3 and comes out as v3."""
    profile = make_profile()
    assert profile.upcast("profile.renamed.v1", {"full_name": "Ada"}) == (
        "profile.renamed.v3",
        {"name": "Ada", "title": "", "rank": 1},
    )


def test_a_middle_version_enters_the_chain_where_it_stands() -> None:
    """v2 data only goes through v2 -> v3."""
    profile = make_profile()
    assert profile.upcast("profile.renamed.v2", {"name": "Ada", "title": "Dr"}) == (
        "profile.renamed.v3",
        {"name": "Ada", "title": "Dr", "rank": 1},
    )


def test_the_current_version_is_left_alone() -> None:
    """Data of the current version comes back as it is."""
    data = {"name": "Ada", "title": "", "rank": 4}
    assert make_profile().upcast("profile.renamed.v3", data) == ("profile.renamed.v3", data)


def test_a_renamed_type_reads_as_its_new_name_and_continues_the_chain() -> None:
    """An event stored under its old name is renamed, then upcast to the current version."""
    event = make_profile().decode_stored("person.named.v1", {"full_name": "Ada"}, seq=7)
    assert event == Renamed("Ada", "", 1)


def test_upcasting_never_changes_the_data_it_was_given() -> None:
    """The stored data stays as read, even though the upcaster pops a key from its input."""
    stored = {"full_name": "Ada"}
    make_profile().upcast("profile.renamed.v1", stored)
    assert stored == {"full_name": "Ada"}


def test_old_versions_and_old_names_are_known() -> None:
    """Every type that leads to a current one counts as known."""
    profile = make_profile()
    assert all(
        profile.knows_event(t)
        for t in ("person.named.v1", "profile.renamed.v1", "profile.renamed.v2")
    )
    assert not profile.knows_event("profile.deleted.v1")


def test_an_unknown_type_is_an_error_naming_type_and_sequence() -> None:
    """An event nobody knows is a SchemaError with its type and stream sequence, never skipped."""
    with pytest.raises(SchemaError) as caught:
        make_profile().decode_stored("profile.deleted.v1", {}, seq=42)
    assert caught.value.details == {"type": "profile.deleted.v1", "seq": 42, "aggregate": "profile"}
    assert "profile.deleted.v1" in caught.value.message and "42" in caught.value.message


def test_upcast_passes_unknown_types_through_for_the_reader_to_judge() -> None:
    """upcast itself does not reject unknown types: projections may ignore them."""
    assert make_profile().upcast("other.thing.v1", {"a": 1}) == ("other.thing.v1", {"a": 1})


def test_a_failing_upcaster_is_a_schema_error_naming_the_sequence() -> None:
    """v1 data without the field the upcaster needs fails as a SchemaError at its sequence."""
    with pytest.raises(SchemaError) as caught:
        make_profile().decode_stored("profile.renamed.v1", {"name": "Ada"}, seq=9)
    assert caught.value.details["seq"] == 9
    assert caught.value.details["type"] == "profile.renamed.v1"


def test_a_type_with_an_evolve_handler_cannot_be_upcast() -> None:
    """Only types that no handler reads any more may have an upcaster."""
    profile = make_profile()
    with pytest.raises(ValueError, match="evolve handler"):
        profile.upcaster("profile.renamed.v3")(lambda data: data)


def test_a_type_has_one_way_forward() -> None:
    """A second upcaster or rename from the same type is refused."""
    profile = make_profile()
    with pytest.raises(ValueError, match="already"):
        profile.renamed("profile.renamed.v1", "profile.other.v1")


def test_cycles_are_refused() -> None:
    """A rename back to where the chain started would never end, so it is refused."""
    profile: Aggregate[Profile] = Aggregate("profile", Profile())
    profile.renamed("a.b.v1", "a.c.v1")
    with pytest.raises(ValueError, match="cycle"):
        profile.renamed("a.c.v1", "a.b.v1")


def test_an_evolve_handler_for_an_upcast_type_is_refused() -> None:
    """Registering a handler for a version that is upcast away would make it unreachable."""
    profile: Aggregate[Profile] = Aggregate("profile", Profile())
    profile.upcaster("profile.renamed.v1")(lambda data: data)
    with pytest.raises(ValueError, match="upcaster"):

        @profile.event("profile.renamed.v1")
        def renamed(state: Profile, event: Renamed) -> Profile:
            return state


V1_CREATED = {
    "user_id": "u-1",
    "lines": [{"sku": "book", "quantity": 2, "unit_price": "19.90"}],
    "total": "39.80",
    "created_at": "2025-03-01T10:00:00+00:00",
}


def test_order_created_v1_reads_as_v2_in_euros() -> None:
    """The example domain's v1 orders had no currency: they read as v2 with EUR."""
    event = order.decode_stored("order.created.v1", V1_CREATED, seq=1)
    assert isinstance(event, OrderCreated)
    assert (event.currency, event.total) == ("EUR", Decimal("39.80"))
    assert order.fold([event]).currency == "EUR"


def test_order_created_v1_data_is_not_v2_data() -> None:
    """Without the upcaster v1 data would not decode as v2: the currency is required there."""
    with pytest.raises(SchemaError):
        order.decode_stored("order.created.v2", V1_CREATED, seq=1)


def test_new_orders_are_written_as_v2_with_their_currency() -> None:
    """An order created now is stored as order.created.v2 and carries its currency."""
    event = order.decode_stored("order.created.v2", {**V1_CREATED, "currency": "CHF"}, seq=2)
    assert order.type_of(event) == "order.created.v2"
    assert order.fold([event]).currency == "CHF"


def test_create_records_the_currency_it_is_given() -> None:
    """A create with a currency decides order.created.v2 carrying it; the default is EUR."""
    lines = [{"sku": "book", "quantity": 1, "unit_price": "5"}]
    spec = AggregateSpec(order).when(
        "create", {"user_id": "u-1", "lines": lines, "currency": "CHF"}
    )
    spec.then_types("order.created.v2").then_state(currency="CHF")
    AggregateSpec(order).when("create", {"user_id": "u-1", "lines": lines}).then_state(
        currency="EUR"
    )


def test_a_currency_must_be_an_iso_code() -> None:
    """A currency that is not three capital letters is invalid, naming `currency`."""
    lines = [{"sku": "book", "quantity": 1, "unit_price": "5"}]
    AggregateSpec(order).when(
        "create", {"user_id": "u-1", "lines": lines, "currency": "euro"}
    ).then_invalid("currency")

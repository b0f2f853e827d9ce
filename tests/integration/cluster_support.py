"""A read model of the test ``counter`` aggregate, for checking that a projection converges."""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime import EventMeta, Projection

from .support import Added, counter


@dataclass
class CountersModel:
    totals: dict[str, int] = field(default_factory=dict)


counters = Projection("counters", CountersModel, follows=[counter])


@counters.on("counter.added.v1")
def added(model: CountersModel, event: Added, meta: EventMeta) -> None:
    model.totals[meta.aggregate_id] = model.totals.get(meta.aggregate_id, 0) + event.amount


@counters.query("totals")
def totals(model: CountersModel) -> dict[str, int]:
    return model.totals

"""Helpers of the observability tests: a projection that halts on a marked event, and reading a
process's endpoints over HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field

import anyio
from prometheus_client.parser import text_string_to_metric_families

from runtime import EventMeta, NotFound, Projection

from ..support import Added, counter

POISON = "poison"


@dataclass
class Totals:
    by_id: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TotalOf:
    id: str


fragile = Projection("fragile", Totals, follows=[counter])


@fragile.on("counter.added.v1")
def added(model: Totals, event: Added, meta: EventMeta) -> None:
    if event.note == POISON:
        raise ValueError("this event cannot be applied")
    model.by_id[meta.aggregate_id] = model.by_id.get(meta.aggregate_id, 0) + event.amount


@fragile.query("total")
def total(model: Totals, args: TotalOf) -> int:
    if args.id not in model.by_id:
        raise NotFound(f"no counter {args.id!r}")
    return model.by_id[args.id]


Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except OSError:
        return 0, b""  # not listening (yet)


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """Status and body of GET ``path`` on the process's metrics port (status 0: no answer)."""
    return await anyio.to_thread.run_sync(_get, f"http://127.0.0.1:{port}{path}")


async def scrape(port: int) -> Series:
    """Every sample of ``/metrics``, parsed with prometheus_client's own parser."""
    status, body = await http_get(port, "/metrics")
    assert status == 200, (status, body[:300])
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float | None:
    """The value of one sample (None when it is not exposed)."""
    return series.get((name, frozenset(labels.items())))

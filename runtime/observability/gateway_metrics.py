"""The gateway's connection series, read from its connection limits at each scrape."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class GatewaySource(Protocol):
    """A gateway's connection limits as the metrics see them (``runtime.gateway.limits``)."""

    @property
    def closed(self) -> Mapping[str, int]:
        """Connections the gateway closed, by reason."""
        ...

    @property
    def open(self) -> int: ...

    @property
    def limited(self) -> int:
        """Requests answered 429 by the per-client limit."""
        ...


class GatewayCollector(Collector):
    """The connection series of the gateways of this process, read at each scrape."""

    def __init__(self, sources: list[GatewaySource]) -> None:
        self.sources = sources

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        families = closed, open_, limited = self._families()
        if not self.sources:
            return iter(families)
        reasons: dict[str, int] = {}
        for source in list(self.sources):
            for reason, count in dict(source.closed).items():
                reasons[reason] = reasons.get(reason, 0) + count
        for reason, count in sorted(reasons.items()):
            closed.add_metric([reason], count)
        open_.add_metric([], sum(s.open for s in self.sources))
        limited.add_metric([], sum(s.limited for s in self.sources))
        return iter(families)

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, GaugeMetricFamily, CounterMetricFamily]:
        return (
            CounterMetricFamily(
                "cqrs_http_connections_closed",
                "Connections the gateway closed by itself, by reason: idle_timeout, "
                "header_timeout, body_timeout, evicted (at the connection cap), refused (at the "
                "cap, every connection busy), head_too_large, url_too_long, too_many_pipelined.",
                labels=["reason"],
            ),
            GaugeMetricFamily("cqrs_http_open_connections", "Connections open to the gateway."),
            CounterMetricFamily(
                "cqrs_http_client_limited",
                "Requests answered 429 because their client had too many in flight.",
                labels=[],
            ),
        )

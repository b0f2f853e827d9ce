"""The Prometheus series of a process, on a registry of its own.

The series names and labels are a contract (dashboards and alerts in ``deploy/observability``
depend on them): ``cqrs_commands_total{aggregate, command, outcome}``,
``cqrs_command_duration_seconds{aggregate, command}``, ``cqrs_occ_conflicts_total{aggregate}``,
``cqrs_live_actors{aggregate}``, ``cqrs_mailbox_full_total{aggregate}``,
``cqrs_queries_total{projection, query, outcome}``, ``cqrs_query_duration_seconds{projection,
query}`` and, per projection replica, ``cqrs_projection_applied_sequence``,
``cqrs_projection_lag_events``, ``cqrs_projection_halted``,
``cqrs_projection_snapshot_age_seconds``, ``cqrs_projection_serving{projection, replica,
version}`` and ``cqrs_projection_catching_up_pending{projection, replica, version}``; the
gateway's ``cqrs_http_requests_total{route, target, outcome}``,
``cqrs_http_request_duration_seconds{route, target}``,
``cqrs_http_connections_closed_total{reason}``, ``cqrs_http_open_connections`` and
``cqrs_http_client_limited_total``; a worker's ``cqrs_owned_partitions{aggregate}`` and its
lease moves.

Metrics are on for a process once :func:`enable` has made its :class:`Metrics`; components look
it up when they are built (:func:`current`) and keep ``None`` when it is off, so a process
without metrics does no counting at all. On the hot path a command costs two dictionary
lookups of label children bound once per aggregate and command, an increment and an
observation in plain Python (see :class:`RequestMetrics`).

A replica's gauges are read when Prometheus scrapes, not kept up to date per event: the
replica is a :class:`ReplicaSource` that the scrape refreshes (its lag needs the stream's last
sequence) and reads.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .gateway_metrics import GatewayCollector, GatewaySource

# Seconds, from a cached read (sub-millisecond) to a command that waited out JetStream timeouts.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
UNKNOWN = "_unknown"  # the label of a command or query name the definition does not have
OK = "ok"  # a command that appended events, a query that answered
NOOP = "noop"  # a command that was accepted and decided no events


class RequestMetrics:
    """The count and duration series of one aggregate's commands or one projection's queries.

    Counted in plain Python (the event loop is the only writer, so no lock is needed) and turned
    into Prometheus samples at scrape time by :class:`_RequestCollector`: a request costs a few
    dictionary operations and a bisection, about a tenth of prometheus_client's locked counter
    and histogram children. A name the definition does not know is counted as ``_unknown``, so a
    client sending made-up names cannot grow the series without bound.
    """

    __slots__ = ("buckets", "counts", "known", "owner", "sums")

    def __init__(self, owner: str, names: Iterable[str]) -> None:
        self.owner = owner
        self.known = frozenset(names)
        # Known names start at zero, so that rate() has a start.
        self.counts: dict[tuple[str, str], int] = {(name, OK): 0 for name in self.known}
        self.buckets: dict[str, list[int]] = {name: _empty_buckets() for name in self.known}
        self.sums: dict[str, float] = dict.fromkeys(self.known, 0.0)

    def done(self, name: str, outcome: str, seconds: float) -> None:
        """Count one request named ``name`` with ``outcome`` that took ``seconds``."""
        if name not in self.known:
            name = UNKNOWN
        counts = self.counts
        key = (name, outcome)
        counts[key] = counts.get(key, 0) + 1
        buckets = self.buckets.get(name)
        if buckets is None:
            buckets = self.buckets[name] = _empty_buckets()
            self.sums[name] = 0.0
        buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.sums[name] += seconds


def _empty_buckets() -> list[int]:
    return [0] * (len(DURATION_BUCKETS) + 1)  # the last one is +Inf


class AggregateMetrics(RequestMetrics):
    """An aggregate type's command series, and those of its actors."""

    __slots__ = ("conflicts", "live_actors", "mailbox_full")

    def __init__(self, metrics: Metrics, aggregate: str, commands: Iterable[str]) -> None:
        super().__init__(aggregate, commands)
        self.conflicts: Counter = metrics.occ_conflicts.labels(aggregate)
        self.live_actors: Gauge = metrics.live_actors.labels(aggregate)
        self.mailbox_full: Counter = metrics.mailbox_full.labels(aggregate)


class _RequestCollector(Collector):
    """``cqrs_<plural>_total{owner, name, outcome}`` and
    ``cqrs_<noun>_duration_seconds{owner, name}`` of every :class:`RequestMetrics` in
    ``sources``, for ``noun`` (command, query) and ``owner`` (aggregate, projection)."""

    def __init__(
        self, noun: str, plural: str, owner: str, sources: dict[str, Any], label: str = ""
    ) -> None:
        self.noun, self.plural, self.owner = noun, plural, owner
        self.label = label or noun  # the name label: command, query, target
        self.sources: dict[str, RequestMetrics] = sources
        self.bounds = [*(str(float(b)) for b in DURATION_BUCKETS), "+Inf"]

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        total, duration = families = self._families()
        for source in list(self.sources.values()):
            # Copies are taken in one step each (atomic under the GIL): the loop keeps counting.
            for (name, outcome), count in source.counts.copy().items():
                total.add_metric([source.owner, name, outcome], count)
            sums = source.sums.copy()
            for name, buckets in source.buckets.copy().items():
                cumulative = zip(self.bounds, itertools.accumulate(list(buckets)), strict=True)
                duration.add_metric([source.owner, name], list(cumulative), sums.get(name, 0.0))
        return iter(families)

    def _families(self) -> tuple[CounterMetricFamily, HistogramMetricFamily]:
        return (
            CounterMetricFamily(
                f"cqrs_{self.plural}",
                f"{self.plural.capitalize()} answered, by outcome: ok, noop (a command that "
                "appended nothing) or the reply's error code.",
                labels=[self.owner, self.label, "outcome"],
            ),
            HistogramMetricFamily(
                f"cqrs_{self.noun}_duration_seconds",
                f"Time from a {self.noun}'s receipt to its reply.",
                labels=[self.owner, self.label],
            ),
        )


@dataclass(frozen=True, slots=True)
class ReplicaGauges:
    """What one projection replica reports at a scrape."""

    applied: int
    lag: int
    halted: bool
    snapshot_age: float | None  # seconds since its newest snapshot; None: it has none
    version: int = 1  # the projection version it runs
    serving: bool = False  # it takes queries
    catching_up: int | None = None  # commits left to deliver while it catches up; None: done


class ReplicaSource(Protocol):
    """A projection replica as the metrics see it."""

    @property
    def labels(self) -> tuple[str, str]:
        """(projection, replica)."""
        ...

    def gauges(self) -> ReplicaGauges: ...

    async def refresh(self) -> None:
        """Learn what a scrape needs from NATS (the stream's last sequence)."""


class Refreshing(Protocol):
    """A component whose gauges are read from NATS at each scrape (a process manager replica
    counting its parked instances)."""

    async def refresh(self) -> None: ...


class OwnershipSource(Protocol):
    """A worker's partition ownership as the metrics see it (the ownership coordinator)."""

    @property
    def aggregates(self) -> Sequence[str]: ...

    @property
    def held(self) -> Mapping[tuple[str, int], object]:
        """The (aggregate, partition) leases held now."""
        ...

    @property
    def settings(self) -> Any:  # has ``partitions``: how many partitions each aggregate has
        ...

    @property
    def stats(self) -> Any:  # has ``acquired``, ``handed_off`` and ``lost`` counts
        ...


class _OwnershipCollector(Collector):
    """``cqrs_owned_partitions{aggregate}``, ``cqrs_partitions{aggregate}`` and the lease
    counts of the workers of this process, read at each scrape."""

    def __init__(self, sources: list[OwnershipSource]) -> None:
        self.sources = sources

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        owned, partitions, acquired, handed_off, lost = families
        counts: dict[str, int] = {}
        totals: dict[str, int] = {}
        moves = [0, 0, 0]
        for source in list(self.sources):
            for aggregate in source.aggregates:
                counts.setdefault(aggregate, 0)
                totals[aggregate] = int(source.settings.partitions)
            for aggregate, _partition in list(source.held):
                counts[aggregate] = counts.get(aggregate, 0) + 1
            stats = source.stats
            moves[0] += stats.acquired
            moves[1] += stats.handed_off
            moves[2] += stats.lost
        for aggregate, count in sorted(counts.items()):
            owned.add_metric([aggregate], count)
        for aggregate, total in sorted(totals.items()):
            partitions.add_metric([aggregate], total)
        if self.sources:
            for family, value in zip((acquired, handed_off, lost), moves, strict=True):
                family.add_metric([], value)
        return iter(families)

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily,
        GaugeMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
    ]:
        return (
            GaugeMetricFamily(
                "cqrs_owned_partitions",
                "Command partitions whose lease this worker holds.",
                labels=["aggregate"],
            ),
            GaugeMetricFamily(
                "cqrs_partitions",
                "Command partitions of the aggregate type (owned or not).",
                labels=["aggregate"],
            ),
            CounterMetricFamily(
                "cqrs_partitions_acquired", "Partition leases this worker took.", labels=[]
            ),
            CounterMetricFamily(
                "cqrs_partition_handoffs",
                "Partitions this worker handed off (drained, then released).",
                labels=[],
            ),
            CounterMetricFamily(
                "cqrs_partitions_lost", "Partition leases this worker lost unreleased.", labels=[]
            ),
        )


class Metrics:
    """Every series of one process, on a registry of its own (not prometheus_client's global
    one, so tests and embedded uses never see another process's series)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.occ_conflicts = Counter(
            "cqrs_occ_conflicts",
            "Appends refused because another writer appended first (decided again).",
            ["aggregate"],
            registry=r,
        )
        self.live_actors = Gauge(
            "cqrs_live_actors", "Aggregate instances held in memory.", ["aggregate"], registry=r
        )
        self.mailbox_full = Counter(
            "cqrs_mailbox_full",
            "Commands answered busy because their actor's mailbox was full.",
            ["aggregate"],
            registry=r,
        )
        self._aggregates: dict[str, AggregateMetrics] = {}
        self._projections: dict[str, RequestMetrics] = {}
        r.register(_RequestCollector("command", "commands", "aggregate", self._aggregates))
        r.register(_RequestCollector("query", "queries", "projection", self._projections))
        self._http: dict[str, RequestMetrics] = {}
        r.register(
            _RequestCollector("http_request", "http_requests", "route", self._http, "target")
        )
        self.replicas: list[ReplicaSource] = []
        r.register(_ReplicaCollector(self.replicas))
        self.ownership: list[OwnershipSource] = []
        r.register(_OwnershipCollector(self.ownership))
        self.gateways: list[GatewaySource] = []
        r.register(GatewayCollector(self.gateways))
        self.parked_instances = Gauge(
            "cqrs_process_parked_instances",
            "Process manager instances parked on a failing reaction (read from JetStream).",
            ["process_manager"],
            registry=r,
        )
        self.triggers_parked = Counter(
            "cqrs_process_triggers_parked",
            "Events and timers this process parked (a failing reaction's, and those behind it).",
            ["process_manager"],
            registry=r,
        )
        self.processes: list[Refreshing] = []
        ProcessCollector(registry=r)

    def aggregate(self, name: str, commands: Iterable[str]) -> AggregateMetrics:
        """The series of aggregate type ``name`` (one object per type and process)."""
        found = self._aggregates.get(name)
        if found is None:
            found = self._aggregates[name] = AggregateMetrics(self, name, commands)
        return found

    def projection(self, name: str, queries: Iterable[str]) -> RequestMetrics:
        """The query series of projection ``name``."""
        found = self._projections.get(name)
        if found is None:
            found = self._projections[name] = RequestMetrics(name, queries)
        return found

    def http(self, route: str, targets: Iterable[str]) -> RequestMetrics:
        """The HTTP series of one gateway route (``command``, ``query``), by target
        (``<aggregate>.<command>``, ``<projection>.<query>``)."""
        found = self._http.get(route)
        if found is None:
            found = self._http[route] = RequestMetrics(route, targets)
        return found

    def watch_gateway(self, gateway: GatewaySource) -> None:
        self.gateways.append(gateway)

    def unwatch_gateway(self, gateway: GatewaySource) -> None:
        if gateway in self.gateways:
            self.gateways.remove(gateway)

    def watch(self, replica: ReplicaSource) -> None:
        self.replicas.append(replica)

    def unwatch(self, replica: ReplicaSource) -> None:
        if replica in self.replicas:
            self.replicas.remove(replica)

    async def refresh(self) -> None:
        """Bring the scrape-time gauges up to date (each replica's lag, parked instances)."""
        for replica in list(self.replicas):
            await replica.refresh()
        for source in list(self.processes):
            await source.refresh()

    def series_names(self) -> set[str]:
        """Every sample name this registry can expose, suffixes included (``_total``,
        ``_bucket``, ...): what a dashboard or an alert may refer to."""
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_count", "_sum", "_created"),
            "gauge": ("",),
        }
        names: set[str] = set()
        for family in self.registry.collect():
            names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        return names


class _ReplicaCollector(Collector):
    """The per-replica gauges, read from the replicas at each scrape."""

    def __init__(self, replicas: list[ReplicaSource]) -> None:
        self.replicas = replicas

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        applied, lag, halted, age, serving, catching_up = families = self._families()
        for replica in list(self.replicas):
            labels = list(replica.labels)
            g = replica.gauges()
            applied.add_metric(labels, g.applied)
            lag.add_metric(labels, g.lag)
            halted.add_metric(labels, 1 if g.halted else 0)
            if g.snapshot_age is not None:
                age.add_metric(labels, g.snapshot_age)
            versioned = [*labels, str(g.version)]
            serving.add_metric(versioned, 1 if g.serving else 0)
            if g.catching_up is not None:
                catching_up.add_metric(versioned, g.catching_up)
        return iter(families)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        labels = ["projection", "replica"]
        return (
            GaugeMetricFamily(
                "cqrs_projection_applied_sequence",
                "Stream sequence of the last commit the replica applied.",
                labels=labels,
            ),
            GaugeMetricFamily(
                "cqrs_projection_lag_events",
                "Stream sequences the replica's model is behind the stream's end.",
                labels=labels,
            ),
            GaugeMetricFamily(
                "cqrs_projection_halted",
                "1 while the replica is halted on a poison event, else 0.",
                labels=labels,
            ),
            GaugeMetricFamily(
                "cqrs_projection_snapshot_age_seconds",
                "Seconds since the replica's newest snapshot was taken.",
                labels=labels,
            ),
            GaugeMetricFamily(
                "cqrs_projection_serving",
                "1 while the replica takes its projection's queries, else 0.",
                labels=[*labels, "version"],
            ),
            GaugeMetricFamily(
                "cqrs_projection_catching_up_pending",
                "Commits left to deliver to a replica that has not caught up yet.",
                labels=[*labels, "version"],
            ),
        )


_current: Metrics | None = None


def current() -> Metrics | None:
    """This process's metrics, or None when they are off."""
    return _current


def enable() -> Metrics:
    """Turn metrics on for this process (idempotent); components built afterwards report."""
    global _current
    if _current is None:
        _current = Metrics()
    return _current


def disable() -> None:
    """Turn metrics off again: components built afterwards do not report."""
    global _current
    _current = None

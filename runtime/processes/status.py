"""What ``cqrs status`` reports about process managers: position, lag, pending timers, parked
instances, partitions, replicas.

Everything comes from JetStream and discovery, so a process manager whose replicas are all down
still shows up: its partition consumers on ``CQRS_PM_EVENTS`` (``cqrs-pm-<name>-<partition>``,
:mod:`.layout`) give the position (the highest sequence below which every event is
acknowledged, over all partitions; the partitioned stream keeps the event stream's numbering)
and what is left to deliver, the timers stream gives the timers waiting to fire, the parked
stream the parked instances and triggers (:mod:`.parking`), and ``$SRV.PING.process-<name>``
counts the live replicas.
"""

from __future__ import annotations

from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS

from ..read.status import gather
from ..transport.nats_errors import nats_call
from ..wire.naming import service_name
from .layout import PARTITIONED_STREAM
from .parking import ParkedStore
from .timers import TimerStore

PREFIX = "cqrs-pm-"


async def collect_processes(
    nc: NATS,
    *,
    stream: str = "EVENTS",
    timers_stream: str = "CQRS_TIMERS",
    parked_stream: str = "CQRS_PM_PARKED",
    timeout: float = 0.5,
) -> list[dict[str, Any]]:
    """One entry per process manager that has partition consumers."""
    js = nc.jetstream(timeout=5.0)
    with nats_call(f"reading the consumers of {PARTITIONED_STREAM}"):
        try:
            last_seq = int((await js.stream_info(stream)).state.last_seq)
            consumers = await js.consumers_info(PARTITIONED_STREAM)
        except nats.js.errors.NotFoundError:
            return []
    by_manager: dict[str, list[Any]] = {}
    for info in consumers:
        name = info.name or ""
        if name.startswith(PREFIX):
            by_manager.setdefault(name[len(PREFIX) :].rsplit("-", 1)[0], []).append(info)
    timers = TimerStore(nc, stream=timers_stream)
    parked = ParkedStore(nc, parked_stream)
    out: list[dict[str, Any]] = []
    for manager, infos in sorted(by_manager.items()):
        pending = sum(int(i.num_pending or 0) for i in infos)
        ack_pending = sum(int(i.num_ack_pending or 0) for i in infos)
        behind = [
            int(i.ack_floor.stream_seq if i.ack_floor else 0)
            for i in infos
            if i.num_pending or i.num_ack_pending
        ]
        # Nothing left for any partition: the newest events concern other things.
        position = min(behind) if behind else last_seq
        counts = await parked.counts(manager)
        pings = await gather(nc, f"$SRV.PING.{service_name('process', manager)}", timeout=timeout)
        out.append(
            {
                "process_manager": manager,
                "partitions": len(infos),
                "position": position,
                "stream_last_seq": last_seq,
                "lag": max(0, last_seq - position),
                "pending": pending,
                "ack_pending": ack_pending,
                "pending_timers": await timers.pending(manager),
                "parked_instances": len(counts),
                "parked_triggers": sum(counts.values()),
                "replicas": len(pings),
            }
        )
    return out

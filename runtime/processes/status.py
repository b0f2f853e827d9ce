"""What ``cqrs status`` reports about process managers: position, lag, pending timers, parked
instances, replicas.

Everything comes from JetStream and discovery, so a process manager whose replicas are all down
still shows up: its shared consumer on the event stream (``cqrs-pm-<name>``) gives the position
(the highest sequence below which every event is acknowledged) and what is left to deliver, the
timers stream gives the timers waiting to fire, the parked stream the parked instances and
triggers (:mod:`.parking`), and ``$SRV.PING.process-<name>`` counts the live
replicas.
"""

from __future__ import annotations

from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS

from ..read.status import gather
from ..transport.nats_errors import nats_call
from ..wire.naming import service_name
from .parking import ParkedStore
from .reactor import consumer_name
from .timers import TimerStore

PREFIX = consumer_name("")


async def collect_processes(
    nc: NATS,
    *,
    stream: str = "EVENTS",
    timers_stream: str = "CQRS_TIMERS",
    parked_stream: str = "CQRS_PM_PARKED",
    timeout: float = 0.5,
) -> list[dict[str, Any]]:
    """One entry per process manager that has a consumer on ``stream``."""
    js = nc.jetstream(timeout=5.0)
    with nats_call(f"reading the consumers of {stream}"):
        try:
            last_seq = int((await js.stream_info(stream)).state.last_seq)
            consumers = await js.consumers_info(stream)
        except nats.js.errors.NotFoundError:
            return []
    timers = TimerStore(nc, stream=timers_stream)
    parked = ParkedStore(nc, parked_stream)
    out: list[dict[str, Any]] = []
    for info in consumers:
        name = info.name or ""
        if not name.startswith(PREFIX):
            continue
        manager = name[len(PREFIX) :]
        pending = int(info.num_pending or 0)
        ack_pending = int(info.num_ack_pending or 0)
        position = int(info.ack_floor.stream_seq if info.ack_floor else 0)
        if pending == 0 and ack_pending == 0:
            position = last_seq  # nothing left for it: the newest events concern other things
        counts = await parked.counts(manager)
        pings = await gather(nc, f"$SRV.PING.{service_name('process', manager)}", timeout=timeout)
        out.append(
            {
                "process_manager": manager,
                "consumer": name,
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
    return sorted(out, key=lambda p: str(p["process_manager"]))

"""A process manager for the dead-letter tests: it relays every addition to counter ``<id>``
as the same addition to counter ``<id>-relay``, so the relay's history shows which reactions
took effect, in which order, and how often.

A deployed bug is simulated by ``CQRS_TEST_RELAY_BROKEN=1`` in the environment of the process
that reacts: its reaction to an amount of 13 raises. An amount of 100 also sets the ``nudge``
timer, due ``CQRS_TEST_NUDGE_SECONDS`` after the event, which relays an amount of 1000.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from runtime import EventMeta, ProcessManager, Reaction, Send, SetTimer, TimerFired

from ..support import Added, counter

UNLUCKY = 13
NUDGE = 100


@dataclass(frozen=True, slots=True)
class Relayed:
    sent: int = 0


relay: ProcessManager[Relayed] = ProcessManager("relay", Relayed(), follows=[counter])


def _add(key: str, amount: int, note: str) -> Send:
    return Send("counter", f"{key}-relay", "add", {"amount": amount, "note": note})


@relay.on("counter.added.v1")
def relay_added(state: Relayed, event: Added, meta: EventMeta) -> Reaction[Relayed] | None:
    if meta.aggregate_id.endswith("-relay"):
        return None
    if event.amount == UNLUCKY and os.environ.get("CQRS_TEST_RELAY_BROKEN") == "1":
        raise RuntimeError(f"the relay cannot take {UNLUCKY}")
    timers = []
    if event.amount == NUDGE:
        seconds = float(os.environ.get("CQRS_TEST_NUDGE_SECONDS", "2"))
        at = datetime.fromisoformat(meta.recorded_at) + timedelta(seconds=seconds)
        timers.append(SetTimer("nudge", at=at))
    add = _add(meta.aggregate_id, event.amount, f"relay of {meta.seq}")
    return Reaction(replace(state, sent=state.sent + 1), commands=[add], timers=timers)


@relay.timer("nudge")
def nudged(state: Relayed, timer: TimerFired) -> Reaction[Relayed]:
    return Reaction(replace(state, sent=state.sent + 1), commands=[_add(timer.key, 1000, "nudge")])

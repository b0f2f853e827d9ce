"""Dormancy: an account still empty 30 days after it was opened is closed.

Opening an account sets a timer; the first deposit cancels it. A timer that fires finds the
process still waiting and sends ``close`` to the account.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from runtime import CancelTimer, ProcessManager, Reaction, Send, SetTimer, TimerFired

from .account import Deposited, Opened, account

GRACE = timedelta(days=30)


@dataclass(frozen=True)
class Waiting:
    waiting: bool = False


dormancy = ProcessManager("dormancy", Waiting(), follows=[account])


@dormancy.on("account.opened.v1")
def opened(state: Waiting, event: Opened) -> Reaction[Waiting]:
    return Reaction(Waiting(waiting=True), timers=[SetTimer("empty", at=event.at + GRACE)])


@dormancy.on("account.deposited.v1")
def deposited(state: Waiting, event: Deposited) -> Reaction[Waiting] | None:
    if not state.waiting:
        return None
    return Reaction(Waiting(waiting=False), timers=[CancelTimer("empty")])


@dormancy.timer("empty")
def empty(state: Waiting, timer: TimerFired) -> Reaction[Waiting] | None:
    if not state.waiting:
        return None
    close = Send("account", timer.key, "close", {"reason": "empty for 30 days"})
    return Reaction(Waiting(waiting=False), commands=[close])

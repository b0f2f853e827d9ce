"""The bench-only aggregate of ``cqrs bench commands --workers N --decide-cpu-us US``.

Its ``decide`` burns ``US`` microseconds of this process's CPU time per command before it
decides the deposit, so the commands are CPU-bound in the worker and extra workers have work to
share. It breaks the rule that a domain reads no clock on purpose: it exists only to make a
command cost CPU, and it is no example of a domain. The worker processes the bench starts read
the time to burn from ``CQRS_BENCH_DECIDE_CPU_US`` when they import it (``CQRS_APP`` names
``runtime.bench.cpu_bound:busy_account``).
"""

from __future__ import annotations

import os
import time

from ..domain.aggregate import Aggregate
from .commands import Deposit, Deposited, deposited

DECIDE_CPU_US = "CQRS_BENCH_DECIDE_CPU_US"
NAME = "benchcpu"
APP = f"{__name__}:busy_account"


def burn(cpu_us: int) -> None:
    """Spin until this process has used ``cpu_us`` more microseconds of CPU time."""
    until = time.process_time() + cpu_us / 1e6
    while time.process_time() < until:
        pass


def make_busy_account(cpu_us: int) -> Aggregate[int]:
    """The deposit aggregate with a ``decide`` that burns ``cpu_us`` of CPU per command."""
    aggregate: Aggregate[int] = Aggregate(NAME, 0, snapshot_every=None)

    @aggregate.command("deposit")
    def deposit(state: int, cmd: Deposit) -> Deposited:
        burn(cpu_us)
        return Deposited(cmd.amount)

    aggregate.event(f"{NAME}.deposited.v1")(deposited)
    return aggregate


busy_account = make_busy_account(int(os.environ.get(DECIDE_CPU_US) or 0))

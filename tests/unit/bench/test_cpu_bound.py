"""The CPU-bound bench aggregate burns what it is told to, per command, and decides a deposit."""

from __future__ import annotations

import time

from runtime.bench.commands import Deposit, Deposited
from runtime.bench.cpu_bound import make_busy_account
from runtime.domain.aggregate import CommandContext


def unused_context() -> CommandContext:
    raise AssertionError("the deposit handler takes no context")


def test_decide_burns_the_given_cpu_time_per_command() -> None:
    """Each decision costs the process at least ``cpu_us`` of CPU time (the loop runs until it
    has), and the events are the plain bench aggregate's."""
    busy = make_busy_account(5_000)
    started = time.process_time()
    events = busy.decide(0, "deposit", Deposit(3), unused_context)
    assert time.process_time() - started >= 0.005
    assert events == [Deposited(3)]

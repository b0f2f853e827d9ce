"""The tests' port claims: no port twice in one process, none shared between processes."""

from __future__ import annotations

import random
import subprocess
import sys

from tests.ports import LOWEST, _ephemeral_low, free_port

CLAIM_IN_CHILD = (
    "import random; random.seed(7); from tests.ports import free_port;"
    " print(*(free_port() for _ in range(200)))"
)


def test_ports_are_below_the_ephemeral_range_and_never_repeat() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(LOWEST <= port < _ephemeral_low() for port in ports)


def test_another_process_never_gets_a_port_this_one_claimed() -> None:
    random.seed(7)  # both start their search at the same port
    mine = {free_port() for _ in range(200)}
    child = subprocess.run(
        [sys.executable, "-c", CLAIM_IN_CHILD], capture_output=True, text=True, check=True
    )
    theirs = {int(port) for port in child.stdout.split()}
    assert len(theirs) == 200
    assert not mine & theirs

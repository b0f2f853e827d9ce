"""Ports for the tests' servers, never handed to two tests.

A port the kernel picks (``bind`` to port 0) can be picked again as soon as it is free. Tests
stop servers while clients of theirs keep reconnecting to the port (a worker riding out a
restart, a cluster with a node down): a server another test starts on that port in the meantime
would take those clients, and both tests would see messages meant for the other.

So test ports come from below the kernel's ephemeral range, where it never picks, and each is
claimed with a lock on its byte of one file in the temporary directory: no other process (another
xdist worker, a second run beside this one) takes it while the claiming process lives, and this
process never hands it out twice.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import socket
import tempfile
import threading
from pathlib import Path

LOCK_FILE = Path(tempfile.gettempdir()) / "cqrs-test-ports.lock"
LOWEST = 10_000

_lock = threading.Lock()
_claimed: set[int] = set()
_fd: int | None = None


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _claim(fd: int, port: int) -> bool:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    return True


def free_port() -> int:
    """A loopback port nobody listens on, claimed for this process's lifetime."""
    global _fd
    with _lock:
        if _fd is None:
            _fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        high = _ephemeral_low()
        span = high - LOWEST
        start = random.randrange(span)
        for step in range(span):
            port = LOWEST + (start + step) % span
            if port in _claimed or not _claim(_fd, port):
                continue
            _claimed.add(port)  # kept even when unusable: the lock is held either way
            if _bindable(port):
                return port
        raise RuntimeError(f"no free test port in {LOWEST}..{high}")

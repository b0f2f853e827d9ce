"""The development state directory (``.cqrs``): who runs the embedded server on it, and where.

Two nats-servers on one JetStream store directory corrupt it, so the process that starts the
embedded server holds an exclusive lock (``fcntl.flock`` on ``<dir>/lock``) for as long as the
server runs, and writes the server's URL to ``<dir>/nats.url``. The kernel releases the lock when
that process ends, however it ends, so the URL file is believed only while its lock is held: a
file left behind by a killed process is stale and is ignored (and removed).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ..errors import StoreInUse

LOCK_FILE = "lock"
URL_FILE = "nats.url"


@dataclass(frozen=True)
class Holder:
    """The process that runs the embedded server on a state directory."""

    pid: int | None
    url: str | None


class DevStore:
    """One state directory: its lock, the running server's URL and the JetStream store."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def store_dir(self) -> Path:
        return self.directory / "jetstream"

    @property
    def url_file(self) -> Path:
        return self.directory / URL_FILE

    def holder(self) -> Holder | None:
        """Who runs a server here, or None when nobody does (a stale URL file is removed)."""
        lock_path = self.directory / LOCK_FILE
        if not lock_path.is_file():
            return None
        with self._try_lock() as fd:
            if fd is not None:
                self.url_file.unlink(missing_ok=True)  # left by a process that is gone
                return None
        url = self.url_file.read_text().strip() if self.url_file.is_file() else ""
        pid = lock_path.read_text().strip() if lock_path.is_file() else ""
        return Holder(int(pid) if pid.isdigit() else None, url or None)

    @contextlib.contextmanager
    def owned(self) -> Iterator[None]:
        """Hold the lock for as long as the context runs; :class:`StoreInUse` if another process
        holds it."""
        with self._try_lock() as fd:
            if fd is None:
                self.refuse(self.holder())
            assert fd is not None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            try:
                yield
            finally:
                self.url_file.unlink(missing_ok=True)

    def refuse(self, holder: Holder | None) -> NoReturn:
        """Raise :class:`StoreInUse`, naming the process that runs a server here."""
        pid = holder.pid if holder else None
        at = f" at {holder.url}" if holder and holder.url else ""
        raise StoreInUse(
            f"{self.directory} is in use: another cqrs process (pid {pid or '?'}) runs "
            f"nats-server{at} on it; stop it, join it with --nats, or use another state directory",
            details={"state_dir": str(self.directory), "pid": pid},
        )

    def publish(self, url: str) -> None:
        """Record the running server's URL (replacing the file whole, never half-written)."""
        tmp = self.url_file.with_name(f".{URL_FILE}.{os.getpid()}")
        tmp.write_text(url + "\n")
        os.replace(tmp, self.url_file)

    @contextlib.contextmanager
    def _try_lock(self) -> Iterator[int | None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            try:
                yield fd
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

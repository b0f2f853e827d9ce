"""Processes for the deployment tests: nats-servers started from generated configs, and
``cqrs worker`` subprocesses. Everything binds to loopback on free ports and is killed on exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson

from runtime.domain.app import App
from runtime.ops.accounts import accounts_config
from runtime.ops.natsconf import (
    ClusterSettings,
    ServerSettings,
    TlsFiles,
    cluster_config,
    single_node_config,
)
from runtime.ops.permissions import Resources, UserPlan, password_var, plan_users
from runtime.transport.embedded import _die_with_parent, find_binary
from runtime.wire.partitions import DEFAULT_PARTITIONS
from tests.ports import free_port

from .certs import CertFiles

REPO = Path(__file__).resolve().parents[2]
CQRS = str(Path(sys.executable).parent / "cqrs")
TEST_APP = "aggregates:AGGREGATES,tests.integration.support:counter"
READ_APP = f"{TEST_APP},tests.integration.cluster_support:counters"


def password(user: str) -> str:
    return f"pw-{user}"


def password_env(app: App, plan: UserPlan) -> dict[str, str]:
    """The environment nats-server resolves the generated ``$CQRS_<USER>_PASSWORD``s from."""
    env = {password_var("sys").name: password("sys")}
    for user in plan_users(app, plan, Resources.of_runtime()):
        env[password_var(user.name).name] = password(user.name)
    return env


async def wait_until(condition: object, timeout: float, what: str, period: float = 0.05) -> None:
    """Poll ``condition()`` (sync or async) until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()  # type: ignore[operator]
        if hasattr(result, "__await__"):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(period)  # the polling period; the wait itself is on the condition


@dataclass
class NatsNode:
    """One nats-server running a config written by the generator."""

    name: str
    directory: Path
    config: Path
    env: Mapping[str, str]
    port: int
    cluster_port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.directory / "nats-server.log").open("ab")
        self.process = subprocess.Popen(
            [find_binary(), "-c", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            preexec_fn=_die_with_parent,
        )
        log.close()

    async def wait_listening(self, timeout: float = 15.0) -> None:
        async def listening() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            try:
                stream = await anyio.connect_tcp("127.0.0.1", self.port)
            except OSError:
                return False
            await stream.aclose()
            return True

        await wait_until(listening, timeout, f"{self.name} to listen")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, chars: int = 2000) -> str:
        path = self.directory / "nats-server.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _server_settings(directory: Path, name: str, port: int, **extra: object) -> ServerSettings:
    return ServerSettings(
        host="127.0.0.1",
        port=port,
        monitor_port=free_port(),
        store_dir=str(directory / "jetstream"),
        server_name=name,
        pid_file=str(directory / "nats.pid"),
        **extra,  # type: ignore[arg-type]
    )


def single_node(
    directory: Path,
    app: App,
    plan: UserPlan,
    *,
    certs: CertFiles | None = None,
    mutual_tls: bool = False,
) -> NatsNode:
    """Write a generated single-node config (loopback, free ports) and return its node."""
    directory.mkdir(parents=True, exist_ok=True)
    tls = TlsFiles(directory=str(certs.directory)) if certs else None
    port = free_port()
    settings = _server_settings(directory, "n0", port, tls=tls, mutual_tls=mutual_tls)
    (directory / "accounts.conf").write_text(
        accounts_config(
            plan_users(app, plan, Resources.of_runtime()), partitions=DEFAULT_PARTITIONS
        )
    )
    config = directory / "nats.conf"
    config.write_text(single_node_config(settings))
    return NatsNode("n0", directory, config, password_env(app, plan), port)


def cluster_nodes(directory: Path, app: App, plan: UserPlan, size: int = 3) -> list[NatsNode]:
    """Write generated cluster configs for ``size`` nodes routing to each other on loopback."""
    ports = [(free_port(), free_port()) for _ in range(size)]
    routes = tuple(f"nats-route://127.0.0.1:{cluster}" for _, cluster in ports)
    accounts = accounts_config(
        plan_users(app, plan, Resources.of_runtime()), partitions=DEFAULT_PARTITIONS
    )
    nodes = []
    for index, (port, cluster_port) in enumerate(ports):
        name = f"n{index}"
        node_dir = directory / name
        node_dir.mkdir(parents=True, exist_ok=True)
        (node_dir / "accounts.conf").write_text(accounts)
        settings = _server_settings(node_dir, name, port, tls=None)
        config = node_dir / "nats.conf"
        config.write_text(
            cluster_config(
                settings,
                ClusterSettings(host="127.0.0.1", port=cluster_port, routes=routes, tls=None),
            )
        )
        nodes.append(NatsNode(name, node_dir, config, password_env(app, plan), port, cluster_port))
    return nodes


@contextmanager
def running(nodes: Sequence[NatsNode]) -> Iterator[Sequence[NatsNode]]:
    for node in nodes:
        node.start()
    try:
        yield nodes
    finally:
        for node in nodes:
            node.kill()


@dataclass
class WorkerProcess:
    """A ``cqrs worker`` (or ``cqrs projector``, ``cqrs processes``) subprocess with its own
    ready file."""

    directory: Path
    url: str
    user: str | None = "worker"
    command: str = "worker"
    app: str = TEST_APP
    extra: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    shutdown_timeout: float = 20.0
    scoped_reads: bool = True  # a worker with a user: False runs it without the flag
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def ready_file(self) -> Path:
        return self.directory / "ready.json"

    @property
    def log(self) -> Path:
        return self.directory / f"{self.command}.log"

    def log_events(self) -> list[dict[str, Any]]:
        """The structured log lines the process wrote (CQRS_LOG_FORMAT=json), in order."""
        lines = self.log.read_bytes().splitlines() if self.log.exists() else []
        return [orjson.loads(line) for line in lines if line.startswith(b"{")]

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "NATS_URL": self.url,
            "CQRS_APP": self.app,
            "CQRS_READY_FILE": str(self.ready_file),
            "CQRS_SHUTDOWN_TIMEOUT": str(self.shutdown_timeout),
            "CQRS_LOG_FORMAT": "json",
            "CQRS_STATE_DIR": str(self.directory / "state"),
            # The generated worker users read histories through scoped consumers only.
            **(
                {"CQRS_SCOPED_READS": "true"}
                if self.scoped_reads and self.user and self.command == "worker"
                else {}
            ),
            **self.env,
        }
        if self.user:
            env["NATS_USER"] = self.user
            env["NATS_PASSWORD"] = password(self.user)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [CQRS, self.command, *self.extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.directory,
                start_new_session=True,  # a process group of its own, as in a terminal
            )

    async def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"cqrs {self.command} exited early: {self.log_tail()}")
            return self.ready_file.exists()

        await wait_until(ready, timeout, f"the ready file of cqrs {self.command}")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def signal_group(self, signum: int) -> None:
        """Signal its whole process group, as a terminal's Ctrl-C does."""
        assert self.process is not None
        os.killpg(self.process.pid, signum)

    async def wait_exit(self, timeout: float) -> int:
        def exited() -> bool:
            assert self.process is not None
            return self.process.poll() is not None

        await wait_until(exited, timeout, f"cqrs {self.command} to exit")
        assert self.process is not None and self.process.returncode is not None
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@contextmanager
def workers(*procs: WorkerProcess) -> Iterator[tuple[WorkerProcess, ...]]:
    """Start ``procs``; kill whatever is still running on the way out."""
    try:
        for proc in procs:
            proc.start()
        yield procs
    finally:
        for proc in procs:
            proc.kill()

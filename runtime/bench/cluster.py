"""``cqrs bench cluster``: the command benchmark on a single node and on a 3-node R3 cluster.

Both runs use the production JetStream settings of ``deploy/`` (``sync_interval: always``), on
throw-away nats-servers bound to loopback, in the same process one after the other, so the two
runtime/baseline ratios are comparable: replication costs the baseline and the runtime alike,
and the ratio should hold on the cluster.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import nats

from ..errors import ServerError
from ..ops.natsconf import ClusterSettings, ServerSettings, cluster_config, single_node_config
from ..transport.embedded import EmbeddedServer, free_port
from ..transport.streams import StreamSettings, ensure_event_stream
from .commands import CommandBenchConfig, bench_commands

Say = Callable[[str], None]


def _settings(directory: Path, name: str, port: int) -> ServerSettings:
    return ServerSettings(
        host="127.0.0.1",
        port=port,
        monitor_port=free_port(),
        store_dir=str(directory / "jetstream"),
        server_name=name,
        pid_file=str(directory / "nats.pid"),
        tls=None,
    )


def _write(directory: Path, config: str) -> Path:
    # EmbeddedServer passes the store directory with -sd; nats-server refuses it twice.
    config = "".join(line for line in config.splitlines(True) if "store_dir:" not in line)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "accounts.conf").write_text("# the bench runs in the global account\n")
    path = directory / "nats.conf"
    path.write_text(config)
    return path


@contextlib.asynccontextmanager
async def _servers(directory: Path, size: int) -> AsyncIterator[list[EmbeddedServer]]:
    """``size`` nats-servers (one: a single node; three: a cluster) with production settings."""
    ports = [(free_port(), free_port()) for _ in range(size)]
    routes = tuple(f"nats-route://127.0.0.1:{cluster}" for _, cluster in ports)
    servers = []
    for index, (port, cluster_port) in enumerate(ports):
        node_dir = directory / f"n{index}"
        settings = _settings(node_dir, f"n{index}", port)
        if size == 1:
            config = single_node_config(settings)
        else:
            cluster = ClusterSettings(host="127.0.0.1", port=cluster_port, routes=routes, tls=None)
            config = cluster_config(settings, cluster)
        servers.append(
            EmbeddedServer(node_dir / "jetstream", port=port, config_file=_write(node_dir, config))
        )
    try:
        for server in servers:
            server.start()
        for server in servers:
            await server.wait_ready()
        yield servers
    finally:
        with anyio.CancelScope(shield=True):
            for server in servers:
                await anyio.to_thread.run_sync(server.stop)


async def _event_stream(url: str, replicas: int, timeout: float = 30.0) -> None:
    """Create the event stream with ``replicas`` once the cluster has elected its meta leader."""
    nc = await nats.connect(url)
    last: Exception | None = None
    try:
        with anyio.fail_after(timeout):
            while True:
                try:
                    await ensure_event_stream(
                        nc.jetstream(timeout=2), StreamSettings(replicas=replicas)
                    )
                    return
                except Exception as exc:  # no meta leader yet: nats-py or configuration errors
                    last = exc
                await anyio.sleep(0.2)  # the meta leader is being elected: try again shortly
    except TimeoutError:
        raise ServerError(f"the cluster did not become ready: {last}") from None
    finally:
        await nc.close()


async def bench_cluster(config: CommandBenchConfig, say: Say) -> dict[str, Any]:
    """Run ``cqrs bench commands`` on a single node, then on a 3-node R3 cluster."""
    results: dict[str, Any] = {"benchmark": "cluster"}
    with tempfile.TemporaryDirectory(prefix="cqrs-bench-cluster-") as tmp:
        for label, size in (("single", 1), ("cluster_r3", 3)):
            say(f"{label}: starting {size} nats-server(s) with sync_interval: always")
            async with _servers(Path(tmp) / label, size) as servers:
                await _event_stream(servers[0].url, replicas=size)
                say(f"{label}: running the command benchmark")
                results[label] = await bench_commands(replace(config, nats_url=servers[0].url))
    return results

"""nats-server configuration files, written from Python values.

The deploy configs are generated (``cqrs deploy nats-config``) rather than hand-edited, so the
permissions always follow the application's aggregates and projections. This module holds the
small writer for nats-server's config syntax and the server-level blocks (single node, cluster,
TLS, JetStream); :mod:`runtime.ops.permissions` builds the accounts and users that go with them.

Secrets never appear in generated files: passwords are ``$VARIABLE`` references that nats-server
resolves from its environment when it starts (a missing variable is a start-up error).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Union

CLIENT_PORT = 4222
CLUSTER_PORT = 6222
MONITOR_PORT = 8222
CLUSTER_NAME = "cqrs"
DEFAULT_TLS_DIR = "/etc/nats/tls"
DEFAULT_STORE_DIR = "/data/jetstream"


@dataclass(frozen=True, slots=True)
class Var:
    """A ``$NAME`` reference that nats-server resolves from its environment."""

    name: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", self.name):
            raise ValueError(f"{self.name!r} is not a valid variable name")


@dataclass(frozen=True, slots=True)
class Raw:
    """A token written as is: sizes such as ``1G`` and durations such as ``30s``."""

    text: str


@dataclass(frozen=True, slots=True)
class Comment:
    """A comment line inside a block (the key it is stored under is ignored)."""

    text: str


Value = Union[str, int, bool, Var, Raw, "Block", Sequence["Value"]]
Block = Mapping[str, Value | Comment]


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_value(value: Value | Comment, indent: int) -> str:
    pad = "  " * indent
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, Var):
        return f"${value.name}"
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Mapping):
        inner = render_block(value, indent + 1)
        return "{\n" + inner + pad + "}"
    if isinstance(value, Sequence):
        if not value:
            return "[]"
        items = "".join("  " * (indent + 1) + render_value(v, indent + 1) + "\n" for v in value)
        return "[\n" + items + pad + "]"
    raise TypeError(f"cannot write {value!r} into a nats-server config")


def render_block(block: Block, indent: int = 0) -> str:
    """The lines of one ``{ ... }`` block (or of the top level), each key on its own line."""
    pad = "  " * indent
    out: list[str] = []
    for key, value in block.items():
        if isinstance(value, Comment):
            out.extend(f"{pad}# {line}".rstrip() + "\n" for line in value.text.splitlines())
        elif isinstance(value, Mapping):
            out.append(f"{pad}{key} {render_value(value, indent)}\n")
        else:
            out.append(f"{pad}{key}: {render_value(value, indent)}\n")
    return "".join(out)


def header(lines: Sequence[str]) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in lines) + "\n"


@dataclass(frozen=True)
class TlsFiles:
    """Where a server finds its certificate, key and the CA that signs clients and peers."""

    directory: str = DEFAULT_TLS_DIR
    cert: str = "server.pem"
    key: str = "server-key.pem"
    ca: str = "ca.pem"

    def path(self, name: str) -> str:
        return f"{self.directory.rstrip('/')}/{name}"

    def block(self, *, verify: bool) -> dict[str, Value | Comment]:
        return {
            "cert_file": self.path(self.cert),
            "key_file": self.path(self.key),
            "ca_file": self.path(self.ca),
            "verify": verify,
            "timeout": 5,
        }


@dataclass(frozen=True)
class ServerSettings:
    """What a production nats-server config says besides accounts."""

    host: str = "0.0.0.0"
    port: int = CLIENT_PORT
    monitor_host: str = "127.0.0.1"
    monitor_port: int = MONITOR_PORT
    store_dir: str = DEFAULT_STORE_DIR
    max_memory_store: str = "1G"
    max_file_store: str = "50G"
    max_payload: str = "1MB"
    max_connections: int = 10_000
    tls: TlsFiles | None = field(default_factory=TlsFiles)
    mutual_tls: bool = False  # clients must present a certificate signed by the CA
    accounts_file: str = "accounts.conf"
    server_name: str | Var = Var("NATS_SERVER_NAME")
    pid_file: str = "/var/run/nats/nats.pid"


def server_block(settings: ServerSettings) -> dict[str, Value | Comment]:
    """The settings every production node shares: listeners, limits, JetStream, TLS."""
    block: dict[str, Value | Comment] = {
        "server_name": settings.server_name,
        "listen": f"{settings.host}:{settings.port}",
        "_monitor": Comment("Monitoring (/healthz, /varz, /jsz) is reachable from this host only."),
        "http": f"{settings.monitor_host}:{settings.monitor_port}",
        "max_payload": Raw(settings.max_payload),
        "max_connections": settings.max_connections,
        "write_deadline": "10s",
        "_lame_duck": Comment(
            "Lame duck mode (nats-server --signal ldm=<pid file>, the Kubernetes preStop hook)\n"
            "moves clients to the other nodes over 30s before the server exits."
        ),
        "pid_file": settings.pid_file,
        "lame_duck_duration": "30s",
        "lame_duck_grace_period": "10s",
        "_jetstream": Comment(
            "sync_interval: always fsyncs every write before it is acknowledged: with the\n"
            "default (2 minutes) a node crash can lose acknowledged events."
        ),
        "jetstream": {
            "store_dir": settings.store_dir,
            "max_memory_store": Raw(settings.max_memory_store),
            "max_file_store": Raw(settings.max_file_store),
            "sync_interval": Raw("always"),
        },
    }
    if settings.tls is not None:
        block["_tls"] = Comment(
            "Clients must use TLS"
            + (
                " and present a certificate signed by the CA (mutual TLS)."
                if settings.mutual_tls
                else "; add verify: true (cqrs deploy nats-config --mtls) for mutual TLS."
            )
        )
        block["tls"] = settings.tls.block(verify=settings.mutual_tls)
    return block


def single_node_config(settings: ServerSettings, *, source: Sequence[str] = ()) -> str:
    """A single production node: JetStream on disk, TLS, accounts from ``accounts_file``."""
    block = server_block(settings)
    return (
        header(["A single production nats-server node for cqrs-runtime.", *source])
        + render_block(block)
        + "\n"
        + f"include {quote(settings.accounts_file)}\n"
    )


@dataclass(frozen=True)
class ClusterSettings:
    """The route listener and the seed routes of a JetStream cluster."""

    name: str = CLUSTER_NAME
    host: str = "0.0.0.0"
    port: int = CLUSTER_PORT
    routes: Sequence[str] = (
        f"nats-route://nats-0.nats:{CLUSTER_PORT}",
        f"nats-route://nats-1.nats:{CLUSTER_PORT}",
        f"nats-route://nats-2.nats:{CLUSTER_PORT}",
    )
    tls: TlsFiles | None = field(default_factory=TlsFiles)


def cluster_config(
    settings: ServerSettings, cluster: ClusterSettings, *, source: Sequence[str] = ()
) -> str:
    """One node of a JetStream cluster; every node runs the same file.

    The node's name comes from ``$NATS_SERVER_NAME`` (the pod name in Kubernetes, the service
    name in the compose file). A node lists every node, itself included, as a route: it skips
    the route to itself, so one file serves all three.
    """
    block = server_block(settings)
    cluster_block: dict[str, Value | Comment] = {
        "name": cluster.name,
        "listen": f"{cluster.host}:{cluster.port}",
        "routes": list(cluster.routes),
        "connect_retries": 120,
        "_advertise": Comment(
            "Clients use the URLs they are given (by DNS name, which TLS can verify), not\n"
            "the pod or container IPs the nodes would advertise."
        ),
        "no_advertise": True,
    }
    if cluster.tls is not None:
        cluster_block["_tls"] = Comment("Routes authenticate each other with certificates.")
        cluster_block["tls"] = cluster.tls.block(verify=True)
    block["cluster"] = cluster_block
    return (
        header(["One node of a 3-node nats-server JetStream cluster for cqrs-runtime.", *source])
        + render_block(block)
        + "\n"
        + f"include {quote(settings.accounts_file)}\n"
    )

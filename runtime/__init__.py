"""cqrs-runtime: an async, actor-style aggregate runtime for CQRS and event sourcing on NATS
JetStream. Everything a user of the runtime may touch is re-exported here."""

from .backoff import Backoff
from .client import Client, CommandResult, QueryResult
from .domain.aggregate import Aggregate, CommandContext
from .domain.app import App
from .domain.process_manager import (
    CancelTimer,
    ProcessManager,
    Reaction,
    Send,
    SetTimer,
    TimerFired,
)
from .domain.projection import EventMeta, PoisonPolicy, Projection
from .domain.types import AggregateId, Money, NotBlank, PositiveMoney, Quantity
from .errors import (
    Busy,
    ConfigurationError,
    Conflict,
    ConnectionClosed,
    CqrsError,
    Internal,
    InvalidInput,
    JetStreamError,
    NoResponders,
    NoServer,
    NotFound,
    PermissionDenied,
    Rejected,
    ReplicaInUse,
    SchemaError,
    ServerError,
    Stale,
    StoreInUse,
    Timeout,
    Unauthorized,
    Unavailable,
    UnknownCommand,
    UnknownQuery,
    Unreachable,
)
from .ownership.coordinator import OwnershipSettings
from .read.dead_letters import DeadLetter, DeadLetters
from .read.projector import Projector
from .read.replicas import run_projections, run_replica
from .read.settings import ProjectorSettings
from .transport.connection import ConnectOptions, connect
from .transport.embedded import EmbeddedServer, embedded_server
from .transport.streams import StreamSettings
from .wire.envelope import Commit, StoredEvent
from .wire.naming import check_id
from .wire.partitions import partition_of
from .write.history import AggregateHistory, FieldChange, PastState
from .write.host import ActorHost, HostSettings
from .write.snapshots import SnapshotSettings, SnapshotStore
from .write.store import EventStore
from .write.worker import WorkerSettings, run_worker

__all__ = [
    "ActorHost",
    "Aggregate",
    "AggregateHistory",
    "AggregateId",
    "App",
    "Backoff",
    "Busy",
    "CancelTimer",
    "Client",
    "CommandContext",
    "CommandResult",
    "Commit",
    "ConfigurationError",
    "Conflict",
    "ConnectOptions",
    "ConnectionClosed",
    "CqrsError",
    "DeadLetter",
    "DeadLetters",
    "EmbeddedServer",
    "EventMeta",
    "EventStore",
    "FieldChange",
    "HostSettings",
    "Internal",
    "InvalidInput",
    "JetStreamError",
    "Money",
    "NoResponders",
    "NoServer",
    "NotBlank",
    "NotFound",
    "OwnershipSettings",
    "PastState",
    "PermissionDenied",
    "PoisonPolicy",
    "PositiveMoney",
    "ProcessManager",
    "Projection",
    "Projector",
    "ProjectorSettings",
    "Quantity",
    "QueryResult",
    "Reaction",
    "Rejected",
    "ReplicaInUse",
    "SchemaError",
    "Send",
    "ServerError",
    "SetTimer",
    "SnapshotSettings",
    "SnapshotStore",
    "Stale",
    "StoreInUse",
    "StoredEvent",
    "StreamSettings",
    "Timeout",
    "TimerFired",
    "Unauthorized",
    "Unavailable",
    "UnknownCommand",
    "UnknownQuery",
    "Unreachable",
    "WorkerSettings",
    "check_id",
    "connect",
    "embedded_server",
    "partition_of",
    "run_projections",
    "run_replica",
    "run_worker",
]

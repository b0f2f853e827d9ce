"""Readiness of a worker or projector process, for container probes and service managers.

A process that serves NATS micro services records them in a *ready file* once they are listening
and removes them as soon as it starts to shut down. ``cqrs health --ready-file PATH`` (the
Kubernetes readiness probe and the compose health check) reads the file and pings each of those
services *by instance id* through NATS (``$SRV.PING.<service>.<id>``), so it checks this very
process end to end (its connection, its subscriptions, the server between them) and not merely
that some replica somewhere answers.

The same services are also kept in memory (:func:`serving`), for the process's own ``/readyz``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from nats.aio.client import Client as NATS

from ..errors import ConfigurationError, NoResponders, Timeout
from .nats_errors import nats_call

_serving: dict[str, str] = {}


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the ready file {path}: {exc}") from None
    services = data.get("services", {}) if isinstance(data, dict) else {}
    return {str(k): str(v) for k, v in services.items()}


def _write(path: Path, services: Mapping[str, str]) -> None:
    if not services:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "services": dict(services)}, indent=1))
    os.replace(tmp, path)  # readers never see half a file


def mark_ready(path: Path | None, services: Mapping[str, str]) -> None:
    """Record ``services`` (micro service name -> instance id) as serving."""
    _serving.update(services)
    if path is None:
        return
    current = _read(path)
    current.update(services)
    _write(path, current)


def mark_not_ready(path: Path | None, names: Iterable[str]) -> None:
    """Withdraw ``names``: the probe fails from now on, while the process drains."""
    names = list(names)
    for name in names:
        _serving.pop(name, None)
    if path is None:
        return
    with contextlib.suppress(ConfigurationError):
        current = _read(path)
        for name in names:
            current.pop(name, None)
        _write(path, current)


def serving() -> dict[str, str]:
    """The services this process serves now (micro service name -> instance id)."""
    return dict(_serving)


def ready_services(path: Path) -> dict[str, str]:
    """The services a ready file lists (empty when the file does not exist)."""
    return _read(path)


async def ping(nc: NATS, services: Mapping[str, str], *, timeout: float = 2.0) -> list[str]:
    """Ping each service instance; return one line per instance that did not answer."""
    problems: list[str] = []
    for name, instance in sorted(services.items()):
        subject = f"$SRV.PING.{name}.{instance}" if instance else f"$SRV.PING.{name}"
        try:
            with nats_call(f"the ping on {subject}"):
                await nc.request(subject, b"", timeout=timeout)
        except NoResponders:
            problems.append(f"{name} ({instance or 'any instance'}): not listening")
        except Timeout:
            problems.append(f"{name} ({instance or 'any instance'}): no answer in {timeout}s")
    return problems

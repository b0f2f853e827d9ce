"""Where the NATS connection comes from: a configured URL, or the embedded server.

With no URL configured, ``cqrs dev`` and ``cqrs demo`` start the embedded nats-server on the
store directory ``.cqrs/jetstream`` and write its URL to ``.cqrs/nats.url`` while it runs, so a
second terminal's ``cqrs send`` finds it (see :mod:`runtime.transport.devstore`).

The first connection is bounded: nats-py's ``max_reconnect_attempts=-1`` applies to the first
connect too and would retry an unreachable URL forever, so the first connect gets
``connect_timeout`` seconds in all and fails with :class:`~runtime.errors.Unreachable` naming the
URL and the last error; a server that refuses the credentials fails it at once with
:class:`~runtime.errors.Unauthorized`, as retrying cannot help. Once connected, the connection
reconnects with back-off (see :mod:`runtime.transport.lifeline`).
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from nats.aio.client import Client as NATS

from ..errors import ConfigurationError, NoServer, Unauthorized, Unreachable
from ..log import get_logger
from .devstore import DevStore
from .embedded import embedded_server
from .lifeline import Lifeline, describe, lifeline_of, refuses_credentials, servers_label
from .refusals import Connection

log = get_logger("runtime.transport.connection")

STATE_DIR = Path(".cqrs")
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RECONNECTS = 60  # per server; with the back-off, about five minutes
USER_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach NATS: URL, credentials and TLS (all optional)."""

    url: str | None = None
    creds: str | None = None
    user: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    name: str = "cqrs"
    state_dir: Path = field(default=STATE_DIR)
    inbox_prefix: str | None = None
    close_timeout: float = 10.0  # seconds the connection may take to drain on close
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT  # the first connect, all attempts together
    max_reconnects: int = DEFAULT_MAX_RECONNECTS  # per server once connected; -1: forever, 0: none

    def resolved_inbox_prefix(self) -> str | None:
        """The inbox prefix for replies: explicit, ``NATS_INBOX_PREFIX``, or ``_INBOX_<user>``.

        A per-user prefix is what lets the server confine each user's subscriptions to its own
        replies (see ``runtime/ops/permissions.py``); nats-py's default ``_INBOX`` is shared by all.
        """
        prefix = self.inbox_prefix or os.environ.get("NATS_INBOX_PREFIX")
        if prefix:
            return prefix
        if self.user and USER_TOKEN.fullmatch(self.user):
            return f"_INBOX_{self.user}"
        return None

    def resolved_url(self) -> str | None:
        """The URL given explicitly or in ``NATS_URL`` (None: use the development store)."""
        return self.url or os.environ.get("NATS_URL") or None


async def open_connection(url: str, options: ConnectOptions) -> NATS:
    """Connect to ``url`` (a comma-separated list names several servers of one cluster), giving
    up after ``options.connect_timeout`` seconds with :class:`Unreachable`, or at once with
    :class:`Unauthorized` when the server refuses the credentials."""
    kwargs: dict[str, Any] = {
        "name": options.name,
        "connect_timeout": max(0.5, min(options.connect_timeout, 5.0)),  # per attempt
        "reconnect_time_wait": 0.5,  # between first-connect attempts to one server
    }
    inbox_prefix = options.resolved_inbox_prefix()
    if inbox_prefix:
        kwargs["inbox_prefix"] = inbox_prefix
    if options.creds:
        kwargs["user_credentials"] = options.creds
    if options.user:
        kwargs["user"] = options.user
        kwargs["password"] = options.password or ""
    if options.tls_ca or options.tls_cert:
        kwargs["tls"] = _tls_context(options)
    servers = [u.strip() for u in url.split(",") if u.strip()]
    label = servers_label(url)
    lifeline = Lifeline(options.max_reconnects)
    log.info("nats_connecting", url=label, timeout=options.connect_timeout)
    nc = Connection(options.user)
    connected = False
    refused = anyio.CancelScope()  # cancelled when the server refuses the credentials
    lifeline.on_refused = refused.cancel
    try:
        with refused, anyio.fail_after(options.connect_timeout):
            await nc.connect(
                servers,
                allow_reconnect=options.max_reconnects != 0,
                drain_timeout=max(1, int(options.close_timeout)),
                **lifeline.callbacks(),
                **kwargs,
            )
        if refused.cancel_called:
            raise _refused(label, options, lifeline.last_error or "refused")
        connected = True
    except Unauthorized:
        raise
    except Exception as exc:
        why = lifeline.last_error or describe(exc)
        if refuses_credentials(why):
            raise _refused(label, options, why) from None
        raise Unreachable(
            f"cannot connect to NATS at {label}: {why} "
            f"(connect timeout {options.connect_timeout:g}s)",
            details={"url": label, "error": why, "connect_timeout": options.connect_timeout},
        ) from None
    finally:
        if not connected:
            lifeline.closing = True
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await _close_quietly(nc)
    lifeline.connected = True
    lifeline.on_refused = None
    lifeline.attach(nc)
    return nc


def _refused(label: str, options: ConnectOptions, why: str) -> Unauthorized:
    if options.creds:
        whose = f"the credentials file {options.creds}"
    elif options.user:
        whose = f"user {options.user!r} (or its password)"
    else:
        whose = "a connection without credentials"
    return Unauthorized(
        f"the NATS server at {label} refuses {whose}: {why}",
        details={"url": label, "user": options.user, "error": why},
    )


@contextlib.asynccontextmanager
async def connect(
    options: ConnectOptions, *, embedded: bool = True, join: bool = True
) -> AsyncIterator[NATS]:
    """Connect to the configured NATS, else to the development store's server.

    Without a URL: when a process already runs the embedded server on ``options.state_dir``, join
    it (or, with ``join=False``, refuse with :class:`StoreInUse`); when none does, start one if
    ``embedded`` (holding the store's lock while it runs), or fail with :class:`NoServer`.
    """
    url = options.resolved_url()
    store = DevStore(options.state_dir)
    if url is None:
        holder = store.holder()
        if holder is not None and join and holder.url is not None:
            url = holder.url
        elif holder is not None:
            store.refuse(holder)
    if url is not None:
        nc = await open_connection(url, options)
        try:
            yield nc
        finally:
            with anyio.CancelScope(shield=True):
                await close(nc, options.close_timeout)
        return
    if not embedded:
        raise NoServer(
            f"no NATS server is running (no `cqrs dev` in {options.state_dir}): "
            "start `cqrs dev` in another terminal, or pass --nats / set NATS_URL",
            details={"state_dir": str(options.state_dir)},
        )
    async with connect_embedded(options) as nc:
        yield nc


@contextlib.asynccontextmanager
async def connect_embedded(options: ConnectOptions) -> AsyncIterator[NATS]:
    """Start the embedded server on ``options.state_dir`` (holding its lock, publishing its URL
    while it runs) and connect to it; :class:`StoreInUse` if another process runs one there."""
    store = DevStore(options.state_dir)
    with store.owned():
        async with embedded_server(store.store_dir) as server:
            store.publish(server.url)
            nc = await open_connection(server.url, options)
            try:
                yield nc
            finally:
                with anyio.CancelScope(shield=True):
                    await close(nc, options.close_timeout)


def _tls_context(options: ConnectOptions) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=options.tls_ca)
        if options.tls_cert:
            ctx.load_cert_chain(options.tls_cert, options.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the TLS files: {exc}") from None
    return ctx


async def _close_quietly(nc: NATS) -> None:
    with contextlib.suppress(Exception):
        await nc.close()


async def close(nc: NATS, timeout: float) -> None:
    """Drain (deliver what is pending, flush what was published), bounded by ``timeout``."""
    lifeline = lifeline_of(nc)
    if lifeline is not None:
        lifeline.closing = True
    with anyio.move_on_after(timeout), contextlib.suppress(Exception):
        await nc.drain()
    with anyio.move_on_after(1), contextlib.suppress(Exception):
        await nc.close()

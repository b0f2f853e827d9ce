"""Where the NATS connection comes from: a configured URL, or the embedded server.

With no URL configured, ``cqrs dev`` and ``cqrs demo`` start the embedded nats-server on the
store directory ``.cqrs/jetstream`` and write its URL to ``.cqrs/nats.url`` while it runs, so a
second terminal's ``cqrs send`` finds it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import nats
from nats.aio.client import Client as NATS

from ..errors import ServerError
from .embedded import embedded_server

STATE_DIR = Path(".cqrs")
URL_FILE = "nats.url"
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

    def resolved_url(self, *, running_dev: bool = True) -> str | None:
        """The URL to use: explicit, ``NATS_URL``, or a running ``cqrs dev`` server's."""
        if self.url:
            return self.url
        if os.environ.get("NATS_URL"):
            return os.environ["NATS_URL"]
        url_file = self.state_dir / URL_FILE
        if running_dev and url_file.is_file():
            return url_file.read_text().strip() or None
        return None


async def open_connection(url: str, options: ConnectOptions) -> NATS:
    """Connect to ``url`` (a comma-separated list names several servers of one cluster)."""
    kwargs: dict[str, Any] = {"name": options.name, "max_reconnect_attempts": -1}
    inbox_prefix = options.resolved_inbox_prefix()
    if inbox_prefix:
        kwargs["inbox_prefix"] = inbox_prefix
    if options.creds:
        kwargs["user_credentials"] = options.creds
    if options.user:
        kwargs["user"] = options.user
        kwargs["password"] = options.password or ""
    if options.tls_ca or options.tls_cert:
        import ssl

        ctx = ssl.create_default_context(cafile=options.tls_ca)
        if options.tls_cert:
            ctx.load_cert_chain(options.tls_cert, options.tls_key)
        kwargs["tls"] = ctx
    servers = [u.strip() for u in url.split(",") if u.strip()]
    try:
        return await nats.connect(
            servers,
            connect_timeout=5,
            allow_reconnect=True,
            drain_timeout=max(1, int(options.close_timeout)),
            **kwargs,
        )
    except Exception as exc:
        raise ServerError(f"cannot connect to NATS at {url}: {exc}") from None


@contextlib.asynccontextmanager
async def connect(
    options: ConnectOptions, *, embedded: bool = True, publish_url: bool = False
) -> AsyncIterator[NATS]:
    """Connect to the configured NATS, or run the embedded server when none is configured."""
    url = options.resolved_url(running_dev=not publish_url)
    if url is not None:
        nc = await open_connection(url, options)
        try:
            yield nc
        finally:
            with anyio.CancelScope(shield=True):
                await _close(nc, options.close_timeout)
        return
    if not embedded:
        raise ServerError(
            "no NATS server: start `cqrs dev` in another terminal, or pass --nats / set NATS_URL"
        )
    async with embedded_server(options.state_dir / "jetstream") as server:
        url_file = options.state_dir / URL_FILE
        if publish_url:
            url_file.write_text(server.url + "\n")
        nc = await open_connection(server.url, options)
        try:
            yield nc
        finally:
            with anyio.CancelScope(shield=True):
                await _close(nc, options.close_timeout)
                if publish_url:
                    url_file.unlink(missing_ok=True)


async def _close(nc: NATS, timeout: float) -> None:
    """Drain (deliver what is pending, flush what was published), bounded by ``timeout``."""
    with anyio.move_on_after(timeout), contextlib.suppress(Exception):
        await nc.drain()
    with anyio.move_on_after(1), contextlib.suppress(Exception):
        await nc.close()

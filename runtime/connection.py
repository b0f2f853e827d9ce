"""Where the NATS connection comes from: a configured URL, or the embedded server.

With no URL configured, ``cqrs dev`` and ``cqrs demo`` start the embedded nats-server on the
store directory ``.cqrs/jetstream`` and write its URL to ``.cqrs/nats.url`` while it runs, so a
second terminal's ``cqrs send`` finds it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import nats
from nats.aio.client import Client as NATS

from .errors import ServerError
from .server import embedded_server

STATE_DIR = Path(".cqrs")
URL_FILE = "nats.url"


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
    kwargs: dict[str, Any] = {"name": options.name, "max_reconnect_attempts": -1}
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
    try:
        return await nats.connect(url, connect_timeout=5, allow_reconnect=True, **kwargs)
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
                await _close(nc)
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
                await _close(nc)
                if publish_url:
                    url_file.unlink(missing_ok=True)


async def _close(nc: NATS) -> None:
    with contextlib.suppress(Exception):
        await nc.drain()
    with contextlib.suppress(Exception):
        await nc.close()

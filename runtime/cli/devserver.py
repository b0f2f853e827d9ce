"""Which NATS server ``cqrs dev`` uses, and why.

``cqrs dev`` runs its embedded nats-server unless a URL is configured, and ``NATS_URL`` (the nats
CLI's own variable, so often left set in a shell) configures one as surely as ``--nats`` does.
Without a word about it, a user expecting the embedded server sees a connection to another one,
or "cannot connect" to a server they never meant. So dev says in one line which server it uses,
why, and how to get the embedded one; the same words end the error when that server is
unreachable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import typer

from ..errors import CqrsError, Unreachable
from ..transport.connection import ConnectOptions
from ..transport.lifeline import servers_label


@dataclass(frozen=True)
class DevServer:
    """The server ``cqrs dev`` connects to (``server`` None: the embedded one) and why."""

    server: str | None
    because: str
    instead: str | None = None  # how to get the embedded server instead

    @classmethod
    def of(cls, typer_ctx: typer.Context, options: ConnectOptions) -> DevServer:
        url = options.resolved_url()
        if url is None:
            return cls(None, "neither --nats nor NATS_URL names a server")
        source = typer_ctx.get_parameter_source("nats_url")
        if source is not None and source.name == "COMMANDLINE":
            also = " and unset NATS_URL" if os.environ.get("NATS_URL") else ""
            return cls(servers_label(url), "--nats names it", f"leave out --nats{also}")
        return cls(
            servers_label(url),
            "NATS_URL is set in the environment",
            "unset NATS_URL, or run `NATS_URL= cqrs dev`",
        )

    def fields(self) -> dict[str, str]:
        """The one log line's fields."""
        line = {"server": self.server or "embedded", "because": self.because}
        if self.instead:
            line["for_the_embedded_server"] = self.instead
        return line

    def hint(self, error: CqrsError) -> str | None:
        """What to add to an error reaching the configured server."""
        if self.server is None or not isinstance(error, Unreachable):
            return None
        return f"cqrs dev uses it because {self.because}; for the embedded server: {self.instead}"

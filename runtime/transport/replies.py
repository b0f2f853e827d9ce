"""Where replies may go: only to inboxes.

A request's reply subject is chosen by whoever sends the request. A responder that published its
reply wherever it was told could be made to write into the event stream (a command with the
reply subject ``events.user.<victim>`` would store the reply as the victim's next commit), into
the Object Store or a KV bucket. So the runtime's services (:mod:`.micro`) answer only reply
subjects under an inbox prefix (:class:`ReplyPolicy`; by default NATS's own ``_INBOX.`` and the
per-user ``_INBOX_<user>`` the runtime's clients use). A request with any other reply subject
is refused *before* it is handled: nothing runs, nothing is stored, no reply goes out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_REPLY_PREFIXES = ("_INBOX.", "_INBOX_")
REPLY_PREFIXES_ENV = "CQRS_REPLY_PREFIXES"


@dataclass(frozen=True, slots=True)
class ReplyPolicy:
    """The reply subject prefixes a service answers; every other reply subject is refused."""

    prefixes: tuple[str, ...] = DEFAULT_REPLY_PREFIXES

    def __post_init__(self) -> None:
        if not self.prefixes or not all(p.startswith("_INBOX") for p in self.prefixes):
            # A prefix such as "events." would reopen the hole this policy closes.
            raise ValueError(f"reply prefixes must start with _INBOX, got {self.prefixes}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ReplyPolicy:
        """The policy ``CQRS_REPLY_PREFIXES`` (comma-separated) names, else the default."""
        raw = environ.get(REPLY_PREFIXES_ENV, "")
        prefixes = tuple(p.strip() for p in raw.split(",") if p.strip())
        return cls(prefixes) if prefixes else cls()

    def allows(self, reply: str) -> bool:
        return bool(reply) and reply.startswith(self.prefixes)

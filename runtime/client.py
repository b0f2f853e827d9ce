"""The Python client other services use to send commands and ask queries over NATS."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from nats.aio.client import Client as NATS

from .backoff import Backoff
from .errors import CqrsError, NoResponders, Timeout, error_from_wire
from .observability.tracing import with_trace
from .transport.connection import ConnectOptions, connect
from .transport.limits import check_fits
from .transport.nats_errors import nats_call
from .wire import codec
from .wire.envelope import H_CAUSATION_ID, H_COMMAND_ID, H_CORRELATION_ID, H_MIN_SEQ
from .wire.naming import check_id, check_name, command_subject, query_subject


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The reply to a successful command."""

    aggregate: str
    id: str
    version: int
    seq: int
    command_id: str
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> CommandResult:
        return cls(
            aggregate=body["aggregate"],
            id=body["id"],
            version=int(body["version"]),
            seq=int(body["seq"]),
            command_id=body["command_id"],
            events=list(body.get("events", [])),
        )


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The reply to a successful query: the answer, the sequence the answering replica's model
    reflects, and the projection version that answered (0 from a replica that does not say)."""

    result: Any
    seq: int
    version: int = 0


RESEND = Backoff(first=0.05, maximum=0.8, jitter=0.5)  # between attempts of one command
# The least time an attempt gets (or the attempt timeout, when shorter). A resend that would
# have less is not made: a nearly expired attempt would turn "nobody serves it" into a timeout,
# whose outcome is unknown, for no better chance of an answer.
LEAST_ATTEMPT = 1.0


class Client:
    """Sends commands and queries; raises the typed error a failure reply describes.

    Failures on the way are errors of the same tree: :class:`NoResponders` (nothing serves the
    subject), :class:`Timeout` (no reply in time: the outcome is unknown, retry with the same
    command id), :class:`Unavailable` (the connection is closed, draining or reconnecting),
    :class:`InvalidInput` (the request is over the server's max payload).

    A command that finds no worker (no responders: its partition is between owners, or the
    workers are restarting) or gets no reply within ``attempt_timeout`` is sent again with the
    same command id until ``timeout`` has passed: the command id makes the retry safe. The
    error raised is the last attempt's, and every attempt has at least a second (or the whole
    ``attempt_timeout``), so a command nobody serves ends as :class:`NoResponders`.
    """

    def __init__(
        self, nc: NATS, *, timeout: float = 10.0, attempt_timeout: float | None = None
    ) -> None:
        self.nc = nc
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.retries = 0  # commands sent again, for metrics

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        url: str | None = None,
        *,
        options: ConnectOptions | None = None,
        timeout: float = 10.0,
    ) -> AsyncIterator[Client]:
        """A client on its own connection to ``url`` (or ``options``: credentials, TLS,
        ``connect_timeout``), closed when the context exits. The first connect gives up after
        ``options.connect_timeout`` seconds (5 by default) with :class:`Unreachable`, or at once
        with :class:`Unauthorized` when the server refuses the credentials."""
        options = options or ConnectOptions()
        if url is not None:
            options = replace(options, url=url)
        async with connect(options, embedded=False) as nc:
            yield cls(nc, timeout=timeout)

    async def send(
        self,
        aggregate: str,
        aggregate_id: str,
        command: str,
        args: Any = None,
        *,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        timeout: float | None = None,
        trace: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Send one command and wait for its result.

        A command id is generated when not given; pass the same one again to retry safely.
        """
        check_name(aggregate, field="aggregate")
        check_id(aggregate_id)
        check_name(command, field="command")
        command_id = check_id(command_id or uuid.uuid4().hex, field="command_id")
        headers = {H_COMMAND_ID: command_id}
        if correlation_id:  # without one the worker correlates with the command id
            headers[H_CORRELATION_ID] = correlation_id
        if causation_id:
            headers[H_CAUSATION_ID] = causation_id
        with_trace(headers, trace)
        subject = command_subject(aggregate, aggregate_id, command)
        payload = {} if args is None else args
        overall = timeout or self.timeout
        deadline = time.monotonic() + overall
        per_attempt = self.attempt_timeout or max(overall / 3, LEAST_ATTEMPT)
        least = min(per_attempt, LEAST_ATTEMPT)
        attempt = 0
        while True:
            window = min(deadline - time.monotonic(), per_attempt)
            if attempt:  # a resend was made for its least time; a late wake-up does not cut it
                window = max(window, least)
            try:
                body = await self._request(
                    subject,
                    payload,
                    headers,
                    window,
                    what=f"aggregate {aggregate!r}",
                )
                return CommandResult.from_wire(body)
            except (NoResponders, Timeout):
                delay = RESEND.delay(attempt + 1)
                if deadline - time.monotonic() < delay + least:
                    raise
            attempt += 1
            self.retries += 1
            await anyio.sleep(delay)

    async def query(
        self,
        projection: str,
        query: str,
        args: Any = None,
        *,
        min_seq: int | CommandResult | None = None,
        timeout: float | None = None,
        trace: Mapping[str, str] | None = None,
    ) -> QueryResult:
        """Ask one query. ``min_seq`` (a sequence, or a command's result) asks read-your-writes:
        the answer reflects at least that commit, or the query fails with ``stale``."""
        check_name(projection, field="projection")
        check_name(query, field="query")
        headers: dict[str, str] = {}
        if isinstance(min_seq, CommandResult):
            min_seq = min_seq.seq
        if min_seq:
            headers[H_MIN_SEQ] = str(int(min_seq))
        with_trace(headers, trace)
        body = await self._request(
            query_subject(projection, query),
            {} if args is None else args,
            headers,
            timeout,
            what=f"projection {projection!r}",
        )
        return QueryResult(
            result=body.get("result"),
            seq=int(body.get("seq", 0)),
            version=int(body.get("version", 0)),
        )

    async def _request(
        self,
        subject: str,
        args: Any,
        headers: dict[str, str],
        timeout: float | None,
        *,
        what: str,
    ) -> dict[str, Any]:
        payload = args if isinstance(args, bytes) else codec.dumps(args)
        # Over max_payload (headers included) the server would close this connection.
        check_fits(self.nc, "the request", payload, headers)
        try:
            with nats_call(f"{what} ({subject})"):
                msg = await self.nc.request(
                    subject, payload, timeout=timeout or self.timeout, headers=headers
                )
        except NoResponders:
            raise NoResponders(
                f"no worker serves {what} (nothing listens on {subject}: none is running for "
                "it, or no such name is deployed)",
                details={"subject": subject},
            ) from None
        body = codec.loads(msg.data)
        if not isinstance(body, dict):
            raise CqrsError(f"unexpected reply on {subject}")
        if "error" in body:
            raise error_from_wire(body)
        return body

"""The query side's NATS interface: one ``nats.micro`` service per projection.

Requests arrive on ``query.<projection>.<query>``; every serving replica of a projection joins
the queue group ``cqrs-projection-<projection>``, so they share the query load while each of them
consumes every event. A query is answered straight from the in-memory read model, inside the
subscription's callback (it is a dictionary lookup, not I/O), with the same reply and error
format as commands: ``{"result": ..., "seq": <stream sequence the model reflects>, "version":
<the projection version that answered>}``.

A replica takes queries only while it is elected to (:mod:`runtime.read.election`): the service
is discoverable from the start (``$SRV`` pings and stats, which ``cqrs status`` reads), but its
query endpoint subscribes only in :meth:`QueryService.serve` and drains in
:meth:`QueryService.unserve`. A replica that has just begun serving beside replicas that answered
before it is *fenced*: each query waits until the model reflects the stream's end as read after
the query arrived, so no answer comes from a model behind one another replica already gave.

Read-your-writes: a request with a ``Cqrs-Min-Seq`` header is answered only once the replica's
model reflects at least that stream sequence, or with ``stale`` after ``stale_timeout`` (at once
when the sequence is beyond the stream's end). Such a request waits in a task of its own, so the
callback returns at once and other queries go on.

The service's ``$SRV.STATS`` reply carries the replica's status (applied sequence, snapshot,
halted state, serving or not) as endpoint data; that is what ``cqrs status`` collects.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup
from nats.aio.client import Client as NATS
from nats.micro.service import EndpointStats
from opentelemetry.trace import Span

from ..errors import CqrsError, Internal, InvalidInput, Stale, excerpt
from ..log import get_logger
from ..observability import metrics
from ..observability.metrics import OK
from ..observability.tracing import activated, end_span, start_server_span, tracer
from ..transport.cleanup import cleanup_scope
from ..transport.micro import MicroService, Request, definition_service
from ..wire import codec
from ..wire.envelope import H_MIN_SEQ
from ..wire.naming import QUERY_PREFIX

if TYPE_CHECKING:
    from ..domain.projection import QueryPlan
    from .projector import Projector

    QueryRun = Callable[[Any, Any], Any]

log = get_logger("runtime.read.query_service")

MAX_SEQ = 2**64 - 1  # stream sequences are unsigned 64-bit integers
MAX_SEQ_DIGITS = len(str(MAX_SEQ))
DIGEST_QUERY = "_digest"  # internal: no query name can start with "_" (see naming.check_name)


def _query_of(subject: str) -> str:
    """The query a request asks: the last token of ``query.<projection>.<query>``."""
    return subject[subject.rfind(".") + 1 :]


def min_seq_of(headers: dict[str, str] | None) -> int:
    """The ``Cqrs-Min-Seq`` of a request (0 when absent); ``invalid`` unless 0..2^64-1."""
    raw = (headers or {}).get(H_MIN_SEQ)
    if raw is None or raw == "":
        return 0
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= MAX_SEQ_DIGITS else -1
    if not 0 <= value <= MAX_SEQ:
        raise InvalidInput(
            f"{H_MIN_SEQ} must be a stream sequence (an integer 0 to 2^64-1), got {excerpt(raw)}",
            details={"field": H_MIN_SEQ},
        )
    return value


class QueryService:
    """Serves the queries of one projection replica."""

    def __init__(self, nc: NATS, projector: Projector[Any]) -> None:
        self.nc = nc
        self.projector = projector
        self.projection = projector.projection
        self.service: MicroService | None = None
        self._tg: TaskGroup | None = None
        self.fenced = False
        self._version = self.projection.version
        self._position = projector.read_position  # the projector's for good
        # Each query looked up once (decoder and handler), not per request; by subject too.
        self._plans: dict[str, QueryPlan] = {}
        self._subjects: dict[str, tuple[str, QueryPlan]] = {}
        for name in self.projection.queries:
            plan = self.projection.query_plan(name)
            if plan is not None:
                self._plans[name] = plan
                self._subjects[f"{QUERY_PREFIX}.{self.projection.name}.{name}"] = name, plan
        self.log = log.bind(projection=self.projection.name, replica=projector.replica)
        # Looked up once, like the metrics: install an SDK before building the service.
        self.tracer = tracer()
        process_metrics = metrics.current()
        self.metrics = (
            process_metrics.projection(self.projection.name, self.projection.queries)
            if process_metrics is not None
            else None
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[QueryService]:
        """Be discoverable until the context exits (taking queries between :meth:`serve` and
        :meth:`unserve`); then stop taking queries and answer the waiting ones."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await self.start()
                yield self
            finally:
                with cleanup_scope(self.projector.settings.timeout):
                    await self.stop()
                self.projector.release_waiters()
                self._tg = None

    async def start(self) -> None:
        name = self.projection.name
        service = definition_service(
            self.nc,
            "projection",
            name,
            serves="queries",
            names=list(self.projection.queries),
            subject=f"{QUERY_PREFIX}.{name}.*",
            handler=self.handle if self.tracer is not None else self._handle,
            # No span to give: most queries are answered by _answer_at_once.
            quick=self._answer_at_once if self.tracer is None else None,
            metadata={
                "replica": self.projector.replica,
                "projection_version": str(self.projection.version),
            },
            stats_data=self._stats,
        )
        await service.start(endpoints=False)
        self.service = service

    @property
    def serving(self) -> bool:
        return self.service is not None and self.service.taking_requests

    async def serve(self, *, fenced: bool) -> None:
        """Take queries from now on; ``fenced``: each waits for the stream's end (see above)."""
        self.fenced = fenced
        if self.service is not None:
            await self.service.open_endpoints()

    async def unserve(self) -> None:
        """Stop taking queries; those received are answered (waiting ones when they can be)."""
        if self.service is not None:
            await self.service.close_endpoints()

    async def stop(self) -> None:
        """Stop taking queries; every query already received is still answered."""
        service, self.service = self.service, None
        if service is not None:
            await service.stop()

    def _stats(self, endpoint: EndpointStats) -> dict[str, Any]:
        return self.projector.status()

    async def handle(self, request: Request) -> None:
        """Answer at once, or hand a read-your-writes query to a waiting task; traced (the
        service's handler while a tracer is installed)."""
        t = self.tracer
        if t is None:
            await self._handle(request)
            return
        name = self.projection.name
        attributes = {"cqrs.projection": name, "cqrs.query": _query_of(request.subject)}
        span = start_server_span(t, f"query {name}", request.headers, attributes)
        with activated(span):
            await self._handle(request, span)

    async def _handle(self, request: Request, span: Span | None = None) -> None:
        """Answer a query (the service's handler while no tracer is installed: a query then
        costs no span, no context switch and, with metrics off, no clock read)."""
        started = time.perf_counter() if self.metrics is not None else 0.0
        subject = request.subject
        query = subject[subject.rfind(".") + 1 :]  # _query_of, inline: this runs per query
        try:
            plan = self._plans.get(query)
            if plan is None:
                if query == DIGEST_QUERY:  # internal, not a query of the projection: not counted
                    digest = self.projector.digest()
                    await request.respond({"result": digest, "seq": digest["applied_seq"]})
                    if span is not None:
                        end_span(span, OK)
                    return
                plan = self._plan(query, request.data)
            decode, run = plan
            args = decode(request.data)
            headers = request.headers
            min_seq = min_seq_of(headers) if headers else 0
            projector = self.projector
            seq = projector.position
            if (min_seq and min_seq > seq) or (self.fenced and projector.halted is None):
                if self._tg is None or projector.halted is not None:
                    raise self._stale(min_seq)
                self._tg.start_soon(
                    self._answer_when_reached, request, query, run, args, min_seq, started, span
                )
                return
            await request.respond(self._answer(query, run, args, seq))
            if self.metrics is not None or span is not None:
                self._answered(query, OK, started, span)
        except CqrsError as exc:
            self._refused(request.subject, exc)
            await request.respond(exc)
            self._answered(query, exc.code, started, span)

    def _answer_at_once(
        self, subject: str, headers: dict[str, str] | None, data: bytes
    ) -> bytes | CqrsError | None:
        """The reply :meth:`_handle` gives a query that needs the model alone, without its
        coroutine; None when the query needs more (the digest, an unknown query, a wait for
        read-your-writes or behind a fence): :meth:`_handle` answers it then."""
        planned = self._subjects.get(subject)
        if planned is None or self.fenced:
            return None
        query, (decode, run) = planned
        metrics = self.metrics
        started = time.perf_counter() if metrics is not None else 0.0
        try:
            args = decode(data)
            min_seq = min_seq_of(headers) if headers else 0
            seq = self._position.value
            if min_seq > seq:
                return None
            reply = self._answer(query, run, args, seq)
        except CqrsError as exc:
            self._refused(subject, exc)
            self._answered(query, exc.code, started, None)
            return exc
        if metrics is not None:  # timed to the reply, which the endpoint sends at once
            metrics.done(query, OK, time.perf_counter() - started)
        return reply

    def _refused(self, subject: str, exc: CqrsError) -> None:
        if exc.code != "not_found":
            self.log.info("query_refused", subject=subject, code=exc.code, reason=exc.message)

    def _plan(self, query: str, data: bytes) -> QueryPlan:
        """How to answer a query not looked up at the start; an unknown one is refused as
        :meth:`Projection.decode_query` refuses it (a body that is no JSON object first)."""
        plan = self.projection.query_plan(query)
        if plan is None:
            self.projection.decode_query(query, data)
            raise AssertionError(f"decode_query accepted the unknown query {query!r}")
        return plan

    async def _answer_when_reached(
        self,
        request: Request,
        query: str,
        run: QueryRun,
        args: Any,
        min_seq: int,
        started: float,
        span: Span | None,
    ) -> None:
        try:
            position = self.projector.read_position
            asked = time.monotonic()
            timeout = self.projector.settings.stale_timeout
            reached = False
            with anyio.move_on_after(timeout):  # the whole wait, the stream's end read included
                if min_seq > max(position.head, position.value) or self.fenced:
                    head = await position.read_head()
                    if self.fenced:  # not the query's own bound: no reply behind others' replies
                        min_seq = max(min_seq, head)
                reached = await self.projector.wait_for(min_seq, timeout)
            if not reached:
                raise self._stale(min_seq, ahead=position.ahead(min_seq, asked))
            await request.respond(self._answer(query, run, args, self.projector.position))
            self._answered(query, OK, started, span)
        except CqrsError as exc:
            await request.respond(exc)
            self._answered(query, exc.code, started, span)

    def _answered(self, query: str, outcome: str, started: float, span: Span | None) -> None:
        """Count a query answered, and end its span."""
        if self.metrics is not None:
            self.metrics.done(query, outcome, time.perf_counter() - started)
        if span is not None:
            end_span(span, outcome)

    def _answer(self, query: str, run: QueryRun, args: Any, seq: int) -> bytes:
        """The encoded reply of one query, run against the current model, which reflects
        ``seq`` (read just before: nothing can apply an event in between)."""
        try:
            result = run(self.projector.model, args)
            return codec.dumps({"result": result, "seq": seq, "version": self._version})
        except CqrsError:
            raise
        except Exception as exc:
            self.log.exception("query_crashed", query=query)
            raise Internal(f"{type(exc).__name__} while answering {query}") from None

    def _stale(self, min_seq: int, *, ahead: bool = False) -> Stale:
        halted = self.projector.halted
        position = self.projector.position
        name = self.projection.name
        if ahead:
            head = self.projector.read_position.head
            message = (
                f"{H_MIN_SEQ} {min_seq} is ahead of the stream, whose last sequence is {head}: "
                "no commit has that sequence yet"
            )
        else:
            message = f"projection {name!r} reflects seq {position}, not yet {min_seq}"
        if halted is not None:
            message += f" (halted at seq {halted.seq}: {halted.error})"
        details: dict[str, Any] = {
            "projection": name,
            "seq": position,
            "min_seq": min_seq,
            "halted": halted is not None,
        }
        if ahead:
            details["ahead_of_stream"] = True
            details["stream_last_seq"] = self.projector.read_position.head
        return Stale(message[:500], details=details)

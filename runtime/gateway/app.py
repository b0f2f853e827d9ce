"""The gateway's ASGI app: HTTP routes over the commands and queries an :class:`App` defines.

It speaks to workers and projectors through :class:`runtime.Client` over NATS, exactly like any
other client, and keeps no state of its own, so any number of gateways can run behind a load
balancer. Routes are generic (``/commands/{aggregate}/{id}/{command}``, ``/queries/{projection}
/{query}``) and checked against the app's definitions, so an unknown name is a clear 404
problem rather than a routing miss, and nothing is listed by hand.

Only the headers documented here reach NATS (``Idempotency-Key`` as the command id,
``X-Correlation-Id``, ``Cqrs-Min-Seq``); everything else in an HTTP request stays at the gateway.
Request bodies are checked to be one JSON object and forwarded as they came; the worker or
projector validates them against the same schema the OpenAPI document shows.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from nats.aio.client import Client as NATS
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..client import Client
from ..domain.app import App
from ..errors import (
    CqrsError,
    InvalidInput,
    MalformedRequest,
    PayloadTooLarge,
    UnknownCommand,
    UnknownQuery,
    UnsupportedMediaType,
)
from ..log import get_logger
from ..observability import metrics
from ..observability.metrics import OK, RequestMetrics
from ..observability.tracing import activated, end_span, start_server_span, tracer, w3c_headers
from ..transport.readiness import ping
from ..wire import codec
from ..wire.naming import check_id, service_name
from .auth import Tokens
from .docs import docs_routes
from .limits import ConnectionLimits
from .openapi import openapi_document
from .problems import problem, problem_for

log = get_logger("runtime.gateway")

MAX_SEQ = 2**63 - 1


@dataclass(frozen=True)
class GatewaySettings:
    """What one gateway process serves and how strictly."""

    host: str = "127.0.0.1"
    port: int = 8080
    tokens: Tokens = field(default_factory=Tokens)
    max_body_size: int = 512 * 1024
    timeout: float = 10.0  # seconds a command or query may take before the answer is 504
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)  # deadlines, sizes, caps
    ready_timeout: float = 1.0  # seconds each service has to answer /readyz's ping


Endpoint = Callable[[Request], Awaitable[Response]]
Reply = tuple[bytes, list[tuple[bytes, bytes]]]  # a success's JSON body and extra headers
JSON = b"application/json"


class Gateway:
    """The request handlers; one per process, sharing one NATS connection."""

    def __init__(self, nc: NATS, app: App, settings: GatewaySettings) -> None:
        self.nc = nc
        self.app = app
        self.settings = settings
        self.client = Client(nc, timeout=settings.timeout)
        self.aggregates = {a.name: a for a in app.aggregates}
        self.query_args = {
            (p.name, q): p.query_types(q)[0] for p in app.projections for q in p.queries
        }
        self.max_body = min(settings.max_body_size, max(nc.max_payload - 1024, 0))
        self.services = {service_name("aggregate", a.name): "" for a in app.aggregates}
        self.services |= {service_name("projection", p.name): "" for p in app.projections}
        self.openapi = orjson.dumps(openapi_document(app, secured=settings.tokens.required))

    # -- commands and queries -----------------------------------------------------------------

    async def command(self, request: Request) -> Reply:
        headers = _headers(request)
        digest = self.settings.tokens.authenticate(headers.get(b"authorization"))
        params = request.path_params
        aggregate, command = params["aggregate"], params["command"]
        definition = self.aggregates.get(aggregate)
        if definition is None or not definition.has_command(command):
            raise UnknownCommand(
                f"no command {aggregate}.{command}",
                details={"aggregate": aggregate, "command": command},
            )
        aggregate_id = check_id(params["id"])
        self.settings.tokens.authorize(digest, f"{aggregate}.{command}")
        command_id = _optional_token(headers.get(b"idempotency-key"), "Idempotency-Key")
        correlation_id = _optional_token(headers.get(b"x-correlation-id"), "X-Correlation-Id")
        body = await self._json_object(request, headers)
        result = await self.client.send(
            aggregate,
            aggregate_id,
            command,
            body,
            command_id=command_id,
            correlation_id=correlation_id,
            trace=_w3c(headers),
        )
        reply_headers = [
            (b"cqrs-seq", str(result.seq).encode()),
            (b"idempotency-key", result.command_id.encode()),
        ]
        if correlation_id:
            reply_headers.append((b"x-correlation-id", correlation_id.encode()))
        return orjson.dumps(result), reply_headers

    async def query(self, request: Request) -> Reply:
        headers = _headers(request)
        digest = self.settings.tokens.authenticate(headers.get(b"authorization"))
        projection, query = request.path_params["projection"], request.path_params["query"]
        key = (projection, query)
        if key not in self.query_args:
            raise UnknownQuery(
                f"no query {projection}.{query}",
                details={"projection": projection, "query": query},
            )
        self.settings.tokens.authorize(digest, f"{projection}.{query}")
        min_seq = _min_seq(headers.get(b"cqrs-min-seq"))
        if request.method == "POST":
            body = await self._json_object(request, headers)
        else:
            body = self._query_string_args(request, self.query_args[key])
        result = await self.client.query(
            projection, query, body, min_seq=min_seq, trace=_w3c(headers)
        )
        answer = {"result": result.result, "seq": result.seq, "version": result.version}
        reply_headers = [
            (b"cqrs-seq", str(result.seq).encode()),
            (b"cqrs-projection-version", str(result.version).encode()),
        ]
        return orjson.dumps(answer, default=codec.to_builtins), reply_headers

    async def _json_object(self, request: Request, headers: dict[bytes, str]) -> bytes:
        """The request body, checked to be one JSON object within the size limit."""
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                raise MalformedRequest("Content-Length must be a number")
            if int(length) > self.max_body:
                raise _too_large(self.max_body)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body:
                raise _too_large(self.max_body)
        if not body.strip():
            return b"{}"
        media_type = headers.get(b"content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json" and not (
            media_type.startswith("application/") and media_type.endswith("+json")
        ):
            raise UnsupportedMediaType(
                f"the body must be application/json, not {media_type or 'untyped'}"[:200],
                details={"content_type": media_type[:100]},
            )
        try:
            codec.loads_object(bytes(body))
        except InvalidInput as exc:
            raise MalformedRequest(exc.message[:300], details=exc.details) from None
        return bytes(body)

    @staticmethod
    def _query_string_args(request: Request, args_type: Any) -> bytes:
        """Query-string parameters converted by the query's own argument type (``"10"`` -> 10);
        a repeated parameter is a list."""
        params: dict[str, Any] = {}
        query_string = request.scope["query_string"].decode("latin-1")
        for name, value in parse_qsl(query_string, keep_blank_values=True):
            previous = params.get(name)
            if previous is None:
                params[name] = value
            elif isinstance(previous, list):
                previous.append(value)
            else:
                params[name] = [previous, value]
        if args_type is None:
            if params:
                raise InvalidInput("this query takes no arguments", details={"field": "$"})
            return b"{}"
        typed = codec.convert(params, args_type, strict=True, from_strings=True)
        try:
            return codec.dumps(typed)
        except TypeError as exc:  # converted but not sendable, e.g. an integer past 64 bits
            message = f"an argument cannot be sent: {exc}"
            raise InvalidInput(message, details={"field": "$"}) from None

    # -- the rest -----------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if not self.nc.is_connected:
            return problem("not_ready", "not connected to NATS")
        problems = await ping(self.nc, self.services, timeout=self.settings.ready_timeout)
        if problems:
            return problem("not_ready", "; ".join(problems)[:500], {"problems": problems})
        return JSONResponse({"status": "ready", "services": sorted(self.services)})

    async def openapi_json(self, request: Request) -> Response:
        return Response(self.openapi, media_type="application/json")


TRACE_KEYS = (b"traceparent", b"tracestate")


class _Route:
    """A command or query route as a plain ASGI app: the handler returns the JSON body and the
    headers of a success, and a runtime error becomes its problem. Starlette still routes to
    it and its middleware still wraps it; only the per-request response objects are skipped,
    which is most of what the framework costs on these two hot paths."""

    def __init__(
        self,
        handle: Callable[[Request], Awaitable[Reply]],
        route: str,
        metrics: RequestMetrics | None = None,
    ) -> None:
        self.handle = handle
        self.route = route  # command or query: the first and last path parameters name it
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter() if self.metrics is not None else 0.0
        request = Request(scope, receive)
        span = None
        t = tracer()
        if t is not None:
            raw = {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in TRACE_KEYS}
            span = start_server_span(
                t, f"{request.method} {self.route}", raw, {"http.target": scope["path"]}
            )
        with activated(span):
            outcome = await self._answer(request, scope, receive, send)
        if self.metrics is not None:
            params = list(request.path_params.values())
            target = f"{params[0]}.{params[-1]}" if params else ""
            self.metrics.done(target, outcome, time.perf_counter() - started)
        if span is not None:
            end_span(span, outcome)

    async def _answer(self, request: Request, scope: Scope, receive: Receive, send: Send) -> str:
        """Answer one request; return its outcome (``ok`` or the error code)."""
        try:
            body, headers = await self.handle(request)
        except CqrsError as exc:
            await problem_for(exc)(scope, receive, send)
            return exc.code
        except ClientDisconnect:  # gone mid-body, or cut off at its deadline: nobody to answer
            return "disconnected"
        except Exception:
            log.exception("gateway_request_failed", method=request.method, path=scope["path"])
            await problem("internal", "the gateway failed to handle the request")(
                scope, receive, send
            )
            return "internal"
        length = str(len(body)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", JSON), (b"content-length", length), *headers],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return OK


def _guarded(endpoint: Endpoint) -> Endpoint:
    """Answer a runtime error as its problem, anything unexpected as ``internal`` (logged)."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except CqrsError as exc:
            return problem_for(exc)
        except Exception:
            log.exception("gateway_request_failed", method=request.method, path=request.url.path)
            return problem("internal", "the gateway failed to handle the request")

    return guarded


# The request headers the gateway reads; every other header stays out of the NATS request.
READ_HEADERS = frozenset(
    {
        b"authorization",
        b"content-length",
        b"content-type",
        b"cqrs-min-seq",
        b"idempotency-key",
        b"x-correlation-id",
        b"traceparent",
        b"tracestate",
    }
)


def _headers(request: Request) -> dict[bytes, str]:
    """The headers the gateway reads, in one pass over the raw ones (Starlette's ``Headers``
    searches the whole list on every lookup, which shows at thousands of requests a second)."""
    return {
        name: value.decode("latin-1")
        for name, value in request.scope["headers"]
        if name in READ_HEADERS
    }


def _w3c(headers: dict[bytes, str]) -> dict[str, str] | None:
    """The request's W3C trace headers, passed on to NATS as they came while no span is made
    here (with an SDK the route's span is current and the client sends its context)."""
    if b"traceparent" not in headers or tracer() is not None:
        return None
    return w3c_headers({k.decode(): v for k, v in headers.items() if k in TRACE_KEYS})


def _optional_token(value: str | None, header: str) -> str | None:
    return None if value is None else check_id(value, field=header)


def _min_seq(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or int(value) > MAX_SEQ:
        raise MalformedRequest(
            "Cqrs-Min-Seq must be a stream sequence (a non-negative integer)",
            details={"field": "Cqrs-Min-Seq"},
        )
    return int(value)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body exceeds {limit} bytes", details={"max_body_size": limit}
    )


async def _http_problem(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "not_a_route", 405: "method_not_allowed"}.get(status, "malformed")
    response = problem(code, f"{request.method} {request.url.path} is not served here"[:300])
    if isinstance(exc, HTTPException) and exc.headers and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]  # a 405 names what is served (RFC 9110)
    return response


def create_app(
    nc: NATS, app: App, settings: GatewaySettings, *, middleware: Sequence[Middleware] = ()
) -> Starlette:
    """The ASGI app serving ``app``'s commands and queries over ``nc``.

    ``middleware`` wraps every route: the place for metrics, tracing and access logs.
    """
    gateway = Gateway(nc, app, settings)
    process_metrics = metrics.current()
    commands = queries = None
    if process_metrics is not None:
        names = [f"{a.name}.{c}" for a in app.aggregates for c in a.command_names]
        commands = process_metrics.http("command", names)
        queries = process_metrics.http("query", [f"{p}.{q}" for p, q in gateway.query_args])
    routes = [
        Route(
            "/commands/{aggregate}/{id}/{command}",
            _Route(gateway.command, "command", commands),
            methods=["POST"],
        ),
        Route(
            "/queries/{projection}/{query}",
            _Route(gateway.query, "query", queries),
            methods=["GET", "POST"],
        ),
        Route("/openapi.json", gateway.openapi_json, methods=["GET"]),
        *docs_routes(),
        Route("/healthz", gateway.healthz, methods=["GET"]),
        Route("/readyz", _guarded(gateway.readyz), methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        middleware=list(middleware),
        exception_handlers={HTTPException: _http_problem},
    )

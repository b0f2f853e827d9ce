"""Traces through the OpenTelemetry API, continued across NATS by W3C ``traceparent`` headers.

A command or query that carries ``traceparent`` (and ``tracestate``) continues that trace;
without one a new trace starts. The command's trace context is stored in its commit's headers,
so a projection applying the commit, in another process and perhaps days later, links its
apply span to the command that caused it.

Only the API is a dependency. Until an SDK's tracer provider is installed (:func:`configure_sdk`
does it from the standard ``OTEL_*`` variables, or the application does), :func:`tracer` is
None and callers make no span at all: a command then costs one header lookup, which passes an
incoming ``traceparent`` on to the commit unchanged so a traced projection can still link to it.
The command and query services look the tracer up once, when built, as they do the metrics
(the lookup reads the environment each time): install the SDK before building workers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..log import get_logger
from ..wire.envelope import H_TRACEPARENT as TRACEPARENT
from ..wire.envelope import H_TRACESTATE as TRACESTATE

log = get_logger("runtime.observability.tracing")

A = TypeVar("A")
INSTRUMENTATION = "cqrs-runtime"
_W3C = TraceContextTextMapPropagator()
_SUCCESS = ("ok", "noop")
_NOTHING: AbstractContextManager[None] = contextlib.nullcontext()

_provider: object = None
_tracer: Tracer | None = None


def tracer() -> Tracer | None:
    """The runtime's tracer, or None while no SDK tracer provider is installed."""
    global _provider, _tracer
    provider = trace.get_tracer_provider()
    if provider is not _provider:
        _provider = provider
        no_sdk = isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
        _tracer = None if no_sdk else provider.get_tracer(INSTRUMENTATION)
    return _tracer


def w3c_headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """A request's ``traceparent``/``tracestate`` headers (None without a ``traceparent``)."""
    if not headers:
        return None
    parent = headers.get(TRACEPARENT)
    if not parent:
        return None
    state = headers.get(TRACESTATE)
    return {TRACEPARENT: parent, TRACESTATE: state} if state else {TRACEPARENT: parent}


def start_server_span(
    t: Tracer, name: str, headers: Mapping[str, str] | None, attributes: dict[str, Any]
) -> Span:
    """A span for a request received: a child of the request's trace context, or a new trace."""
    parent = propagate.extract(dict(headers)) if headers else None
    return t.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)


def span_or_nothing(
    t: Tracer | None, name: str, attributes: Callable[[A], dict[str, Any]], arg: A
) -> AbstractContextManager[Span | None]:
    """A current span named ``name`` under ``t``, or a context that does nothing when tracing
    is off (the attributes are only computed for a span that is made)."""
    if t is None:
        return _NOTHING
    return t.start_as_current_span(name, attributes=attributes(arg))


def activated(span: Span | None) -> AbstractContextManager[Any]:
    """Make ``span`` current for a block (nothing when there is no span)."""
    return _NOTHING if span is None else trace.use_span(span, end_on_exit=False)


def end_span(span: Span, outcome: str) -> None:
    """End a request's span with its outcome (``ok``, ``noop`` or an error code)."""
    span.set_attribute("cqrs.outcome", outcome)
    if outcome not in _SUCCESS:
        span.set_status(Status(StatusCode.ERROR, outcome))
    span.end()


def with_trace(headers: dict[str, str], trace: Mapping[str, str] | None) -> None:
    """Add a request's trace context to its NATS headers: ``trace`` when given (W3C headers
    passed on as they came), else the active span's while an SDK is installed."""
    if trace:
        headers.update(trace)
    elif tracer() is not None:
        headers.update(current_w3c())


def current_w3c() -> dict[str, str]:
    """The W3C headers of the active span, to store with a commit."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier


def links_to(headers: Mapping[str, str] | None) -> list[Link]:
    """A link to the span a stored ``traceparent`` names (none when there is none)."""
    found = w3c_headers(headers)
    if found is None:
        return []
    context = trace.get_current_span(_W3C.extract(found)).get_span_context()
    return [Link(context)] if context.is_valid else []


def linked_span(
    t: Tracer, name: str, headers: Mapping[str, str] | None, seq: int
) -> AbstractContextManager[Span]:
    """A new trace's span for work on a stored commit, linked to the span its stored
    ``traceparent`` names (the command that made it)."""
    return t.start_as_current_span(
        name,
        context=Context(),  # a root: the command's trace ended with its reply
        links=links_to(headers),
        kind=SpanKind.CONSUMER,
        attributes={"cqrs.seq": seq},
    )


def add_trace_ids(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: ``trace_id`` and ``span_id`` of the active span, if any."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def configure_sdk(service_name: str) -> Callable[[], None] | None:
    """Install the OpenTelemetry SDK when the standard ``OTEL_*`` variables ask for traces;
    return the function that flushes and stops it, or None when tracing stays off.

    Traces are asked for by ``OTEL_TRACES_EXPORTER`` (``otlp`` or ``console``) or an OTLP
    endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); the
    exporter reads the rest of its settings (headers, protocol, timeouts) from the environment
    itself. ``OTEL_SDK_DISABLED=true`` keeps it off.
    """
    env = os.environ
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true" or exporter_name == "none":
        return None
    if not exporter_name and not endpoint:
        return None
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError:
        log.warning("tracing_sdk_missing", hint="pip install 'cqrs-runtime[otel]'")
        return None
    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        try:
            exporter = _otlp_exporter(env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
        except ImportError:
            log.warning("tracing_exporter_missing", hint="pip install 'cqrs-runtime[otel]'")
            return None
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing_enabled", exporter=exporter_name or "otlp")
    return provider.shutdown


def _otlp_exporter(protocol: str) -> Any:
    if protocol.strip().lower() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()

"""The metrics' label discipline and the tracing helpers that need no SDK."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from runtime.observability.metrics import UNKNOWN, Metrics
from runtime.observability.tracing import add_trace_ids, links_to, tracer, w3c_headers

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_made_up_command_names_share_one_series() -> None:
    """Names a definition does not have are counted as ``_unknown``, so clients cannot grow the
    number of series."""
    metrics = Metrics()
    commands = metrics.aggregate("order", ["create"])
    for name in ("nope", "nada", "create"):
        commands.done(name, "unknown_command" if name != "create" else "ok", 0.001)
    assert sample(metrics, "cqrs_commands_total", aggregate="order", command=UNKNOWN,
                  outcome="unknown_command") == 2  # fmt: skip
    assert sample(metrics, "cqrs_commands_total", aggregate="order", command="create",
                  outcome="ok") == 1  # fmt: skip
    assert sample(metrics, "cqrs_commands_total", aggregate="order", command="nope",
                  outcome="unknown_command") is None  # fmt: skip
    assert sample(metrics, "cqrs_command_duration_seconds_count", aggregate="order",
                  command=UNKNOWN) == 2  # fmt: skip


def test_known_commands_start_at_zero() -> None:
    """A known command's ok series exists before its first command, so rate() has a start."""
    metrics = Metrics()
    metrics.aggregate("user", ["create", "change_email"])
    assert sample(metrics, "cqrs_commands_total", aggregate="user", command="change_email",
                  outcome="ok") == 0  # fmt: skip


def test_without_an_sdk_no_tracer_is_handed_out() -> None:
    """With only the OpenTelemetry API installed, callers get no tracer and make no spans."""
    assert tracer() is None


def test_trace_headers_pass_through_and_link() -> None:
    """An incoming traceparent is kept as it came and names the span a link points to."""
    headers = {"traceparent": PARENT, "tracestate": "a=1", "Cqrs-Command-Id": "c"}
    assert w3c_headers(headers) == {"traceparent": PARENT, "tracestate": "a=1"}
    assert w3c_headers({"Cqrs-Command-Id": "c"}) is None
    (link,) = links_to(headers)
    assert format(link.context.span_id, "016x") == "00f067aa0ba902b7"
    assert links_to({"traceparent": "garbage"}) == []


def test_log_lines_carry_the_active_span_s_ids() -> None:
    """The structlog processor adds trace_id and span_id while a span is current, else nothing."""
    context = SpanContext(
        0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True, TraceFlags(1)
    )
    with trace.use_span(NonRecordingSpan(context)):
        event = add_trace_ids(None, "info", {"event": "x"})
    assert event["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert event["span_id"] == "00f067aa0ba902b7"
    assert "trace_id" not in add_trace_ids(None, "info", {"event": "x"})

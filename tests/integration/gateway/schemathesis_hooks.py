"""Hooks for the schemathesis runs of test_gateway_fuzz.py, loaded by the CLI through
SCHEMATHESIS_HOOKS."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def map_headers(context: Any, headers: dict[str, Any] | None) -> dict[str, Any] | None:
    """A generated Cqrs-Min-Seq becomes 0, a sequence every read model has reached: one ahead of
    the stream waits for the read model's `stale` answer, which the fuzzing would otherwise
    spend its time on (the coverage phase, which runs no hooks, still sends the largest)."""
    if headers and str(headers.get("Cqrs-Min-Seq", "")).isdigit():
        headers["Cqrs-Min-Seq"] = "0"
    return headers

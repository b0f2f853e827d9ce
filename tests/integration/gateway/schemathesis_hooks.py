"""Hooks for the schemathesis runs of test_gateway_fuzz.py, loaded by the CLI through
SCHEMATHESIS_HOOKS."""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.generation import GenerationMode
from schemathesis.generation.meta import CoveragePhaseData


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """A generated Cqrs-Min-Seq becomes 0, a sequence every read model has reached: one ahead of
    the stream waits for the read model's `stale` answer, which the fuzzing would otherwise
    spend its time on. Left as generated: the coverage phase's (which sends the largest there
    is), and a negative case's, whose invalid header may serialize to digits that, made 0,
    would be a valid request the check then expects refused."""
    meta = case.meta
    if meta is not None and (
        meta.generation.mode == GenerationMode.NEGATIVE
        or isinstance(meta.phase.data, CoveragePhaseData)
    ):
        return case
    headers = case.headers
    if headers and str(headers.get("Cqrs-Min-Seq", "")).isdigit():
        headers["Cqrs-Min-Seq"] = "0"
    return case

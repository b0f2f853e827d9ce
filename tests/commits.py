"""Commits built by hand, for tests that append or fold them without running a command."""

from __future__ import annotations

from runtime.wire.envelope import Commit, StoredEvent

RECORDED_AT = "2026-01-01T00:00:00+00:00"


def make_commit(
    aggregate: str,
    aggregate_id: str,
    command: str,
    version: int,
    *events: StoredEvent,
    command_id: str = "c-1",
    recorded_at: str = RECORDED_AT,
    seq: int = 0,
) -> Commit:
    """A commit of ``events`` leaving the aggregate at ``version``, correlated to itself."""
    return Commit(
        aggregate=aggregate,
        aggregate_id=aggregate_id,
        command=command,
        command_id=command_id,
        correlation_id=command_id,
        causation_id=None,
        version=version,
        events=list(events),
        recorded_at=recorded_at,
        seq=seq,
    )

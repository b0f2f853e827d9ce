"""Which reply subjects a refused subscription would have carried."""

from __future__ import annotations

import pytest

from runtime.transport.refusals import matches
from runtime.wire.partitions import unpartitioned


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("_inbox.abc.*", "_inbox.abc.1", True),
        ("_inbox.abc.*", "_inbox.abc.1.2", False),
        ("_inbox.abc.*", "_inbox.abc", False),
        ("_inbox.>", "_inbox.abc.1", True),
        ("_inbox.>", "_inbox", False),
        ("_inbox.abc", "_inbox.abc", True),
        ("_inbox.abc", "_inbox.abd", False),
    ],
)
def test_a_subscription_pattern_covers_the_subjects_of_its_wildcards(
    pattern: str, subject: str, expected: bool
) -> None:
    """``*`` stands for one token and ``>`` for one or more, as in nats-server."""
    assert matches(pattern, subject) is expected


def test_a_partitioned_command_subject_names_the_subject_sent() -> None:
    """The server names a refused command by its partitioned subject; the sent one is known."""
    assert unpartitioned("cmd.7.order.o-1.create") == "cmd.order.o-1.create"
    assert unpartitioned("cmd.order.o-1.create") is None
    assert unpartitioned("events.7.order.o-1.create") is None

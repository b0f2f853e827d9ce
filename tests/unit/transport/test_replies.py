"""Where replies may go, and how big a message is on the wire."""

from __future__ import annotations

import pytest

from runtime.transport.limits import header_size, message_size
from runtime.transport.replies import ReplyPolicy


@pytest.mark.parametrize(
    ("reply", "allowed"),
    [
        ("_INBOX.abc.1", True),
        ("_INBOX_alice.abc.1", True),
        ("events.user.victim", False),
        ("$O.cqrs-projections.C.x", False),
        ("$KV.EVENTS_aggregates.user.u-1", False),
        ("", False),
        ("_INBOXES", False),
    ],
)
def test_only_inbox_reply_subjects_are_answered(reply: str, allowed: bool) -> None:
    """The default policy answers NATS inboxes and per-user inboxes, nothing else."""
    assert ReplyPolicy().allows(reply) is allowed


def test_reply_prefixes_come_from_the_environment() -> None:
    """``CQRS_REPLY_PREFIXES`` replaces the default prefixes."""
    policy = ReplyPolicy.from_env({"CQRS_REPLY_PREFIXES": "_INBOX_svc., _INBOX_other."})
    assert policy.allows("_INBOX_svc.1") and not policy.allows("_INBOX.1")


def test_a_prefix_outside_the_inboxes_is_refused() -> None:
    """A policy that would answer into streams cannot be configured."""
    with pytest.raises(ValueError, match="_INBOX"):
        ReplyPolicy(("events.",))


def test_headers_count_towards_the_message_size() -> None:
    """A message's size is its body plus its header block as nats-py writes it."""
    assert header_size({}) == 0
    assert header_size({"A": "bc"}) == len(b"NATS/1.0\r\nA: bc\r\n\r\n")
    assert message_size(b"12345", {"A": "bc"}) == 5 + len(b"NATS/1.0\r\nA: bc\r\n\r\n")

"""Which connect errors are the server refusing the credentials (no retry can help)."""

from __future__ import annotations

import pytest

from runtime.transport.lifeline import refuses_credentials


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        ("nats: 'Authorization Violation'", True),
        ("nats: authorization failed", True),
        ("nats: 'User Authentication Expired'", True),
        ("nats: 'User Authentication Revoked'", True),
        # A client too slow to send its CONNECT may be let in on the next attempt.
        ("nats: 'Authentication Timeout'", False),
        ("connection refused", False),
        ("nats: 'Permissions Violation for Publish to \"cmd.order\"'", False),
    ],
)
def test_only_refused_credentials_end_the_first_connect_at_once(error: str, refused: bool) -> None:
    """Refused, expired or revoked credentials stop the first connect; anything else retries."""
    assert refuses_credentials(error) is refused

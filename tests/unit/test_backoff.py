"""The one back-off policy every retry in the runtime waits by."""

from __future__ import annotations

import pytest

from runtime import Backoff, ConfigurationError


def test_delays_grow_by_the_factor_up_to_the_maximum() -> None:
    """Each retry waits ``factor`` times longer than the last, never longer than ``maximum``."""
    backoff = Backoff(first=0.1, maximum=1.0)
    assert [backoff.delay(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_a_huge_attempt_number_waits_the_maximum() -> None:
    """An attempt count too large for a float power still gives the maximum, not an error."""
    assert Backoff(first=0.1, maximum=3.0, factor=10).delay(10_000) == 3.0


def test_jitter_draws_within_the_given_share_of_the_delay() -> None:
    """With jitter 0.5 every delay lies between half and all of the plain one."""
    backoff = Backoff(first=1.0, maximum=1.0, jitter=0.5)
    delays = [backoff.delay(3) for _ in range(200)]
    assert all(0.5 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first": 2.0, "maximum": 1.0},
        {"first": -1.0, "maximum": 1.0},
        {"first": 0.1, "maximum": 1.0, "factor": 0.5},
        {"first": 0.1, "maximum": 1.0, "jitter": 1.5},
    ],
)
def test_a_policy_that_cannot_work_is_refused(kwargs: dict[str, float]) -> None:
    """Settings that would shrink, go negative or over-jitter are a configuration error."""
    with pytest.raises(ConfigurationError):
        Backoff(**kwargs)

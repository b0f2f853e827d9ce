"""The given/when/then kit fails a spec that does not hold, also under ``python -O``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from aggregates.order import order
from projections import orders
from runtime.testing import AggregateSpec, ProjectionSpec, SpecFailed

LINES = [{"sku": "book", "quantity": 1, "unit_price": "1.00"}]


def test_a_wrong_expectation_fails_with_a_message_that_says_what_happened() -> None:
    """A spec expecting a rejection of an accepted command fails, naming what it decided."""
    spec = AggregateSpec(order, "ord-1").when("create", {"user_id": "u-1", "lines": LINES})
    with pytest.raises(SpecFailed, match="expected rejected, but it decided"):
        spec.then_rejected()


def test_a_spec_failure_is_an_assertion_error() -> None:
    """Test runners report a failed spec as a failed assertion, not as a crash."""
    with pytest.raises(AssertionError, match="call when\\(\\) first"):
        AggregateSpec(order).then()


def test_a_query_expected_to_fail_that_answers_fails_the_spec() -> None:
    """then_query_fails on a query that answers fails the spec with the answer."""
    with pytest.raises(SpecFailed, match="expected invalid"):
        ProjectionSpec(orders).then_query_fails(
            "get_orders_for_user", {"user_id": "u-1"}, code="invalid"
        )


def test_a_failing_spec_still_fails_under_python_optimize() -> None:
    """Run with ``python -O`` (asserts stripped), a failing spec still raises SpecFailed."""
    script = textwrap.dedent(
        """
        from aggregates.order import order
        from runtime.testing import AggregateSpec
        lines = [{"sku": "book", "quantity": 1, "unit_price": "1.00"}]
        AggregateSpec(order, "ord-1").when("create", {"user_id": "u-1", "lines": lines}).then()
        """
    )
    run = subprocess.run(
        [sys.executable, "-O", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert run.returncode != 0
    assert "SpecFailed: decided [OrderCreated(" in run.stderr

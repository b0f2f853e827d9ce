"""Waiting for JetStream at start: which failures are waited out, for how long, and the logs."""

from __future__ import annotations

import nats.errors
import nats.js.errors
import pytest
from structlog.testing import capture_logs

from runtime.backoff import Backoff
from runtime.transport.startup import (
    is_transient,
    jetstream_call,
    raise_if_transient,
    waiting_for_jetstream,
)

QUICK = Backoff(first=0.001, maximum=0.001)
NO_LEADER = nats.js.errors.ServiceUnavailableError(
    code=503, err_code=10008, description="JetStream system temporarily unavailable"
)


class Flaky:
    """A JetStream call that fails with ``errors`` in turn, then answers "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.mark.parametrize(
    "error",
    [
        nats.errors.TimeoutError(),
        nats.errors.NoRespondersError(),
        nats.js.errors.ServiceUnavailableError(),
        NO_LEADER,
        nats.js.errors.ServerError(code=500, err_code=10009, description="no leader"),
        nats.js.errors.NoStreamResponseError(),
    ],
)
def test_no_answer_and_no_leader_are_transient(error: Exception) -> None:
    """Timeouts, no responders (to an API call or a publish), 503s and "cannot handle the
    request" mean JetStream is not there yet."""
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        nats.js.errors.NotFoundError(code=404, err_code=10059, description="stream not found"),
        nats.js.errors.BadRequestError(code=400, err_code=10058, description="name in use"),
        nats.js.errors.ServerError(code=500, err_code=10074, description="replicas > 1"),
        nats.js.errors.KeyWrongLastSequenceError(description="wrong last sequence: 4"),
        ValueError("a bug"),
    ],
)
def test_answers_about_the_configuration_are_not_transient(error: Exception) -> None:
    """An answer about the stream itself, or a bug, is not something to wait out."""
    assert not is_transient(error)


async def test_outside_a_startup_window_a_call_is_made_once() -> None:
    """Without a start-up window a timeout is raised at once, as before."""
    call = Flaky(nats.errors.TimeoutError())
    with pytest.raises(nats.errors.TimeoutError):
        await jetstream_call("the event stream EVENTS", call)
    assert call.calls == 1


async def test_transient_failures_are_retried_and_logged_until_jetstream_answers() -> None:
    """In a window, each transient failure is logged with what is waited for, then retried."""
    call = Flaky(nats.errors.TimeoutError(), NO_LEADER)
    with capture_logs() as logs, waiting_for_jetstream(30, QUICK):
        assert await jetstream_call("the event stream EVENTS", call) == "ok"
    waiting = [e for e in logs if e["event"] == "jetstream_waiting"]
    assert [(e["what"], e["attempt"]) for e in waiting] == [
        ("the event stream EVENTS", 1),
        ("the event stream EVENTS", 2),
    ]
    assert "timeout" in waiting[0]["error"] and "10008" in waiting[1]["error"]


async def test_a_configuration_error_fails_at_once_inside_a_window() -> None:
    """An answer that is not transient is raised on the first attempt, without waiting."""
    call = Flaky(nats.js.errors.BadRequestError(code=400, err_code=10052, description="bad"))
    with waiting_for_jetstream(30, QUICK), pytest.raises(nats.js.errors.BadRequestError):
        await jetstream_call("the event stream EVENTS", call)
    assert call.calls == 1


async def test_the_last_failure_is_raised_once_the_deadline_has_passed() -> None:
    """When JetStream never answers, the last failure is raised after the deadline, and logged."""
    call = Flaky(*[NO_LEADER] * 10_000)
    with (
        capture_logs() as logs,
        waiting_for_jetstream(0.05, QUICK),
        pytest.raises(nats.js.errors.ServiceUnavailableError),
    ):
        await jetstream_call("the snapshot bucket X", call)
    assert call.calls < 10_000  # it gave up, not the call
    assert logs[-1]["event"] == "jetstream_unavailable"
    assert logs[-1]["what"] == "the snapshot bucket X"


def test_a_transient_raw_api_error_is_raised_for_the_wait() -> None:
    """A raw API reply saying "temporarily unavailable" is raised as nats-py's 503, to be waited
    out; one about the request itself is left to the caller."""
    with pytest.raises(nats.js.errors.ServiceUnavailableError):
        raise_if_transient({"code": 503, "err_code": 10008, "description": "unavailable"})
    raise_if_transient({"code": 404, "err_code": 10014, "description": "consumer not found"})


async def test_a_window_past_its_deadline_makes_a_call_once_without_waiting() -> None:
    """A call made after the window's deadline (in a task the window's block started) fails at
    once, as outside a window, and logs nothing."""
    call = Flaky(NO_LEADER)
    with (
        capture_logs() as logs,
        waiting_for_jetstream(-1, QUICK),
        pytest.raises(nats.js.errors.ServiceUnavailableError),
    ):
        await jetstream_call("the lease bucket X", call)
    assert call.calls == 1
    assert logs == []

"""Each nats-py exception becomes the error of the runtime's tree a caller can act on."""

from __future__ import annotations

import nats.errors
import nats.js.errors
import pytest

from runtime.errors import (
    ConfigurationError,
    CqrsError,
    Internal,
    InvalidInput,
    JetStreamError,
    NoResponders,
    Timeout,
    Unavailable,
    error_from_wire,
)
from runtime.transport.nats_errors import jetstream_setup, nats_call, translate
from runtime.transport.publisher import Refused


@pytest.mark.parametrize(
    ("raised", "expected", "reason"),
    [
        (nats.errors.ConnectionClosedError(), Unavailable, "closed"),
        (nats.errors.ConnectionDrainingError(), Unavailable, "draining"),
        (nats.errors.ConnectionReconnectingError(), Unavailable, "reconnecting"),
        (nats.errors.OutboundBufferLimitError(), Unavailable, "outbound_buffer_full"),
        (nats.errors.NoServersError(), Unavailable, "no_servers"),
        (nats.js.errors.NoStreamResponseError(), Unavailable, "no_stream"),
        (nats.errors.NoRespondersError(), NoResponders, None),
        (nats.errors.TimeoutError(), Timeout, None),
        (nats.errors.MaxPayloadError(), InvalidInput, None),
        (nats.errors.BadSubjectError(), Internal, None),
    ],
)
def test_each_nats_error_has_its_runtime_error(
    raised: nats.errors.Error, expected: type[CqrsError], reason: str | None
) -> None:
    """Connection states are Unavailable with a reason; the others map one to one."""
    error = translate(raised, "the test call")
    assert type(error) is expected
    assert "the test call" in error.message
    assert error.details.get("reason") == reason


def test_a_jetstream_refusal_keeps_its_code() -> None:
    """A JetStream API error becomes a JetStreamError carrying JetStream's err_code."""
    raised = nats.js.errors.BadRequestError(code=400, err_code=10054, description="too big")
    with pytest.raises(JetStreamError, match="too big") as caught, nats_call("the append"):
        raise raised
    assert caught.value.err_code == 10054
    assert caught.value.__cause__ is None


def test_set_up_without_jetstream_is_a_configuration_error() -> None:
    """No answer while setting up a stream means JetStream is off: a configuration error."""
    with (
        pytest.raises(ConfigurationError, match="is JetStream enabled"),
        jetstream_setup("stream 'EVENTS'"),
    ):
        raise nats.errors.TimeoutError


@pytest.mark.parametrize("cls", [Unavailable, JetStreamError, ConfigurationError])
def test_new_errors_travel_the_wire(cls: type[CqrsError]) -> None:
    """error_from_wire rebuilds the error class a reply's code names."""
    error = cls("it failed", details={"reason": "closed"})
    rebuilt = error_from_wire(error.to_wire())
    assert type(rebuilt) is cls
    assert (rebuilt.message, rebuilt.details) == ("it failed", {"reason": "closed"})


@pytest.mark.parametrize(("code", "conflict"), [(10071, True), (10164, True), (10060, False)])
def test_either_wrong_last_sequence_code_is_a_compare_and_set_conflict(
    code: int, conflict: bool
) -> None:
    """Servers give a publish whose expected last sequence is not met one of two codes; the
    event store and the instance store take both for the conflict they retry, nothing else."""
    assert Refused(code, 400, "wrong last sequence").conflict is conflict

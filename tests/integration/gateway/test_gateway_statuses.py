"""Status mapping of the answers a real worker rarely gives on demand (busy, conflict, timeout,
no responders): the gateway runs in-process on a real nats-server, and a raw nats-py responder
stands in for the worker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from runtime import Busy, Conflict
from runtime.domain.app import load_app
from runtime.gateway import GatewaySettings, run_gateway
from runtime.wire import codec

ANSWERS = {"busy": Busy("mailbox full"), "conflict": Conflict("writers kept winning")}


@pytest.fixture
async def http(nc: NATS) -> AsyncIterator[httpx.AsyncClient]:
    async def respond(msg: Msg) -> None:
        answer = ANSWERS.get(msg.subject.split(".")[-2])
        if answer is not None:
            await msg.respond(codec.dumps(answer.to_wire()))
        # any other id: no answer at all, so the gateway times out

    # The test server maps commands to partitions (cmd.<p>.user.<id>.<command>); a server
    # without the mapping delivers them unmapped: answer both, as a worker does.
    await nc.subscribe("cmd.user.*.*", cb=respond)
    await nc.subscribe("cmd.*.user.*.*", cb=respond)
    settings = GatewaySettings(port=0, timeout=0.3)
    async with (
        run_gateway(nc, load_app(), settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("aggregate_id", "status", "code", "retry_after"),
    [
        ("busy", 429, "busy", True),
        ("conflict", 409, "conflict", False),
        ("silent", 504, "timeout", False),
    ],
)
async def test_worker_answers_map_to_their_statuses(
    http: httpx.AsyncClient, aggregate_id: str, status: int, code: str, retry_after: bool
) -> None:
    """busy is 429 with Retry-After, conflict 409, and no answer in time 504."""
    response = await http.post(f"/commands/user/{aggregate_id}/create", json={})
    assert response.status_code == status
    assert response.json()["code"] == code
    assert ("Retry-After" in response.headers) is retry_after


async def test_nothing_serving_a_query_is_503_and_not_ready(http: httpx.AsyncClient) -> None:
    """With no projector running a query is 503 no_responders, and /readyz says which
    services do not answer."""
    query = await http.get("/queries/users/get_user_by_id", params={"user_id": "u-1"})
    ready = await http.get("/readyz")
    assert (query.status_code, query.json()["code"]) == (503, "no_responders")
    assert query.headers["Retry-After"]
    assert (ready.status_code, ready.json()["code"]) == (503, "not_ready")
    assert any("projection-users" in p for p in ready.json()["details"]["problems"])

"""The runtime's own NATS micro service: discovery, statistics and a drain that loses nothing."""

from __future__ import annotations

from typing import Any

import anyio
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.micro.service import INFO_RESPONSE_TYPE, PING_RESPONSE_TYPE, STATS_RESPONSE_TYPE

from aggregates import AGGREGATES
from runtime import InvalidInput, run_worker
from runtime.transport.micro import MicroService, Request
from runtime.wire import codec

from ..procs import wait_until
from ..support import discovery_replies


def echo_service(nc: NATS, **kwargs: Any) -> MicroService:
    """A service answering ``echo.*`` with the request's body, or ``invalid`` for ``echo.bad``."""

    async def echo(request: Request) -> None:
        if request.subject == "echo.bad":
            await request.respond(InvalidInput("bad echo", details={"field": "$"}))
        else:
            await request.respond({"echo": codec.loads(request.data)})

    service = MicroService(nc, name="echo", version="1.0.0", queue_group="echoes", **kwargs)
    service.add_endpoint("echo", "echo.*", echo, {"kind": "test"})
    return service


async def nobody_serves(nc: NATS, subject: str) -> bool:
    """Whether a request to ``subject`` finds no responder (it is never handled if it does)."""
    try:
        await nc.request(subject, b"probe", timeout=0.5)
    except nats.errors.NoRespondersError:
        return True
    except nats.errors.TimeoutError:
        return False
    return False


@pytest.mark.parametrize(
    ("verb", "kind"),
    [("PING", PING_RESPONSE_TYPE), ("INFO", INFO_RESPONSE_TYPE), ("STATS", STATS_RESPONSE_TYPE)],
)
async def test_discovery_answers_for_all_by_name_and_by_instance(
    nc: NATS, verb: str, kind: str
) -> None:
    """$SRV.<verb>, $SRV.<verb>.echo and $SRV.<verb>.echo.<id> each get the typed answer."""
    service = echo_service(nc, description="echoes", metadata={"team": "a"})
    await service.start()
    try:
        for subject in (f"$SRV.{verb}", f"$SRV.{verb}.echo", f"$SRV.{verb}.echo.{service.id}"):
            reply = codec.loads((await nc.request(subject, b"", timeout=2)).data)
            assert reply["type"] == kind
            assert (reply["name"], reply["id"], reply["version"]) == ("echo", service.id, "1.0.0")
            assert reply["metadata"] == {"team": "a"}
        with pytest.raises(nats.errors.NoRespondersError):
            await nc.request(f"$SRV.{verb}.echo.someone-else", b"", timeout=2)
    finally:
        await service.stop()


async def test_info_lists_each_endpoint_with_its_subject_and_queue_group(nc: NATS) -> None:
    """$SRV.INFO describes the endpoint: name, subject, queue group and metadata."""
    service = echo_service(nc, description="echoes")
    await service.start()
    try:
        info = codec.loads((await nc.request("$SRV.INFO.echo", b"", timeout=2)).data)
    finally:
        await service.stop()
    assert info["description"] == "echoes"
    assert info["endpoints"] == [
        {"name": "echo", "subject": "echo.*", "queue_group": "echoes", "metadata": {"kind": "test"}}
    ]


async def test_stats_count_requests_errors_and_time(nc: NATS) -> None:
    """A reply carrying an error counts in num_errors and last_error; every request is timed."""
    service = echo_service(nc, stats_data=lambda endpoint: {"seen": endpoint.num_requests})
    await service.start()
    try:
        assert codec.loads((await nc.request("echo.ok", b"[1]", timeout=2)).data) == {"echo": [1]}
        bad = await nc.request("echo.bad", b"{}", timeout=2)
        assert bad.headers is not None and bad.headers["Nats-Service-Error-Code"] == "invalid"
        stats = codec.loads((await nc.request("$SRV.STATS.echo", b"", timeout=2)).data)
    finally:
        await service.stop()
    [endpoint] = stats["endpoints"]
    assert (endpoint["num_requests"], endpoint["num_errors"]) == (2, 1)
    assert endpoint["last_error"] == "invalid: bad echo"
    assert endpoint["processing_time"] > 0
    assert endpoint["average_processing_time"] == endpoint["processing_time"] // 2
    assert endpoint["data"] == {"seen": 2}


async def test_an_invalid_command_counts_as_an_error_of_the_aggregate_service(nc: NATS) -> None:
    """A worker's $SRV.STATS counts a refused command in num_errors, with its code."""
    async with run_worker(nc, AGGREGATES):
        await nc.request("cmd.user.u-1.create", b'{"name": "A"}', timeout=5)
        [stats] = await discovery_replies(nc, "$SRV.STATS.aggregate-user", 1)
        pong = await nc.request(f"$SRV.PING.aggregate-user.{stats['id']}", b"", timeout=2)
    [endpoint] = stats["endpoints"]
    assert (endpoint["num_requests"], endpoint["num_errors"]) == (1, 1)
    assert endpoint["last_error"].startswith("invalid: ")
    assert codec.loads(pong.data)["id"] == stats["id"]


async def test_stop_answers_every_request_already_delivered(nc: NATS) -> None:
    """Requests delivered before stop() are all handled and answered; later ones find nobody."""
    release = anyio.Event()
    handled: list[int] = []

    async def slow(request: Request) -> None:
        await release.wait()
        if request.data == b"probe":
            await request.respond({})
            return
        handled.append(int(request.data))
        await request.respond({"n": int(request.data)})

    service = MicroService(nc, name="slow", version="1.0.0", queue_group="slow")
    service.add_endpoint("slow", "slow.work", slow)
    await service.start()
    [endpoint] = service.endpoints
    subscription = endpoint.subscription
    assert subscription is not None
    answers: dict[int, Any] = {}

    async def ask(n: int) -> None:
        answers[n] = codec.loads((await nc.request("slow.work", str(n).encode(), timeout=10)).data)

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(ask, n)
        # One request is in the handler, the other 19 wait in this process's pending queue.
        await wait_until(lambda: subscription.pending_msgs == 19, 10, "19 requests queued")
        tg.start_soon(service.stop)
        await wait_until(lambda: nobody_serves(nc, "slow.work"), 10, "the endpoint unsubscribed")
        release.set()
    assert sorted(handled) == list(range(20))
    assert answers == {n: {"n": n} for n in range(20)}
    with pytest.raises(nats.errors.NoRespondersError):
        await nc.request("$SRV.PING.slow", b"", timeout=2)


async def test_a_quick_handler_answers_first_and_leaves_the_rest_to_the_handler(nc: NATS) -> None:
    """A quick handler's body is the reply; its error, a body over max_payload and its None go
    the usual way (error headers, ``too_large``, the handler); a crash is ``internal``; a
    hostile reply subject is refused before it runs. Every request counts in the stats."""
    quick_calls: list[str] = []

    def quick(
        subject: str, headers: dict[str, str] | None, data: bytes
    ) -> bytes | InvalidInput | None:
        quick_calls.append(subject)
        match subject:
            case "fast.ok":
                return b'{"result": "quick"}'
            case "fast.bad":
                return InvalidInput("bad quick", details={"field": "$"})
            case "fast.big":
                return b'"' + b"x" * nc.max_payload + b'"'
            case "fast.crash":
                raise RuntimeError("quick crashed")
        return None

    async def slow(request: Request) -> None:
        await request.respond({"result": "slow", "subject": request.subject})

    service = MicroService(nc, name="fast", version="1.0.0", queue_group="fast")
    service.add_endpoint("fast", "fast.*", slow, quick=quick)
    await service.start()
    try:
        ok = await nc.request("fast.ok", b"{}", timeout=2)
        bad = await nc.request("fast.bad", b"{}", timeout=2)
        big = await nc.request("fast.big", b"{}", timeout=2)
        crash = await nc.request("fast.crash", b"{}", timeout=2)
        other = await nc.request("fast.other", b"{}", timeout=2)
        await nc.publish("fast.ok", b"{}", reply="events.user.victim")
        # Handled in order on the endpoint's subscription: once this is answered, so was that.
        await nc.request("fast.ok", b"{}", timeout=2)
        stats = codec.loads((await nc.request("$SRV.STATS.fast", b"", timeout=2)).data)
    finally:
        await service.stop()
    assert codec.loads(ok.data) == {"result": "quick"} and not ok.headers
    assert bad.headers is not None and bad.headers["Nats-Service-Error-Code"] == "invalid"
    assert codec.loads(big.data)["error"]["details"]["reason"] == "too_large"
    assert crash.headers is not None and crash.headers["Nats-Service-Error-Code"] == "internal"
    assert codec.loads(other.data) == {"result": "slow", "subject": "fast.other"}
    assert quick_calls == ["fast.ok", "fast.bad", "fast.big", "fast.crash", "fast.other", "fast.ok"]
    [endpoint] = stats["endpoints"]
    assert (endpoint["num_requests"], endpoint["num_errors"]) == (7, 4)
    assert endpoint["last_error"].startswith("reply_refused: ")

"""Property-based: arbitrary JSON bodies and headers sent to a real worker and a real projector
always get a well-formed reply or a clear error (never ``internal``, never an empty reply), the
serving connections stay up, and refused input stores nothing."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS

from aggregates import AGGREGATES
from projections import PROJECTIONS
from runtime import ProjectorSettings, run_worker
from runtime.read.replicas import run_projections
from runtime.transport.embedded import EmbeddedServer
from runtime.wire import codec
from tests.ports import free_port

EXAMPLES = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CODES = {
    "invalid",
    "rejected",
    "unknown_command",
    "unknown_query",
    "not_found",
    "conflict",
    "stale",
}
TALLY: collections.Counter[str] = collections.Counter()  # hostile cases tried, by outcome

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["9E+999999", "NaN", "-Infinity", "1e30", "0.1", 2, 2**63, 2**64, 1e300])
    | st.builds(lambda: "x" * 5000),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
FIELDS = ["user_id", "lines", "sku", "quantity", "unit_price", "currency", "status", "reason",
          "name", "email", "role", "order_id", "limit", "offset"]  # fmt: skip
LINE = {"sku": "a", "quantity": 1, "unit_price": "2.50"}
TEMPLATES: list[dict[str, Any]] = [
    {"user_id": "u-1", "lines": [LINE]},
    {"name": "Ada", "email": "ada@example.com", "role": "admin"},
    {"status": "paid"},
    {"reason": "late"},
    {"email": "ada@example.org"},
    {"role": "support"},
    {"order_id": "o-1"},
    {"user_id": "u-1", "status": "created", "limit": 5, "offset": 0},
]


def perturbed(template: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``template`` with some of its fields (or one more) replaced by arbitrary JSON."""
    fields = {key: json_values for key in [*template, "extra"]}
    line = st.fixed_dictionaries({}, optional={k: json_values for k in [*LINE, "x"]})
    if "lines" in template:
        fields["lines"] = st.lists(line.map(lambda o: {**LINE, **o}), max_size=3) | json_values
    return st.fixed_dictionaries({}, optional=fields).map(lambda o: {**template, **o})


bodies = st.one_of(
    st.sampled_from(TEMPLATES),
    st.sampled_from(TEMPLATES).flatmap(perturbed),
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=5),
    json_values,
).map(lambda v: json.dumps(v).encode()) | st.binary(max_size=64)  # json: beyond 64 bits
header_values = st.one_of(
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    st.text(min_size=1, max_size=20).filter(lambda v: v.strip() != ""),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=2**64 - 2, max_value=2**64 + 1).map(str),
    st.just("c" * 70_000),
)
HEADERS = ["Cqrs-Command-Id", "Cqrs-Correlation-Id", "Cqrs-Causation-Id", "Cqrs-Min-Seq", "X-Any"]
headers = st.fixed_dictionaries({}, optional={key: header_values for key in HEADERS})
ids = st.sampled_from(["o-1", "u-1", "o-2"]) | st.from_regex(
    r"[A-Za-z0-9_-]{1,200}", fullmatch=True
)
commands = st.sampled_from(
    ["create", "update_status", "cancel", "change_email", "change_role", "teleport", "_x"]
)
queries = st.sampled_from(
    ["get_order_by_id", "get_orders_for_user", "get_user_by_id", "find_user_by_email", "nope"]
)


class Live:
    """A server with a worker and a projector, each on its own connection, and a client."""

    def __init__(self, portal: BlockingPortal, server: EmbeddedServer) -> None:
        self.portal = portal
        self.server = server
        self.client: NATS = portal.call(nats.connect, server.url)
        self.worker: NATS = portal.call(nats.connect, server.url)
        self.projector: NATS = portal.call(nats.connect, server.url)

    def stored(self) -> int:
        async def count() -> int:
            info = await self.client.jetstream().stream_info("EVENTS")
            return int(info.state.messages)

        return self.portal.call(count)

    def request(self, subject: str, body: bytes, hdrs: dict[str, str]) -> Any:
        async def ask() -> Any:
            return await self.client.request(subject, body, timeout=10, headers=hdrs or None)

        return self.portal.call(ask)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    server = EmbeddedServer(Path(tmp_path_factory.mktemp("props")) / "jetstream", port=free_port())
    server.start()
    try:
        with start_blocking_portal("asyncio") as portal:
            portal.call(server.wait_ready)
            live = Live(portal, server)
            replica = ProjectorSettings(
                replica="p1", snapshot_every=None, snapshot_interval=None, stale_timeout=0.2
            )
            with (
                portal.wrap_async_context_manager(run_worker(live.worker, AGGREGATES)),
                portal.wrap_async_context_manager(
                    run_projections(live.projector, PROJECTIONS, replica)
                ),
            ):
                yield live
            for nc in (live.client, live.worker, live.projector):
                portal.call(nc.close)
    finally:
        server.stop()


def check_reply(live: Live, data: bytes, success_keys: set[str], before: int) -> None:
    assert data, "an empty reply"
    reply = codec.loads(data)
    assert isinstance(reply, dict)
    if "error" in reply:
        error = reply["error"]
        assert error["code"] in CODES, error
        assert isinstance(error["message"], str) and error["message"]
        assert len(data) < 4_096
        assert live.stored() == before, "refused input stored something"
        TALLY["error:" + error["code"]] += 1
    else:
        assert success_keys <= reply.keys(), reply
        TALLY["ok"] += 1
    assert live.worker.is_connected and live.projector.is_connected and live.client.is_connected


@EXAMPLES
@given(aggregate=st.sampled_from(["order", "user"]), id_=ids, command=commands, body=bodies,
       hdrs=headers)  # fmt: skip
def test_any_command_gets_a_clear_answer(
    live: Live, aggregate: str, id_: str, command: str, body: bytes, hdrs: dict[str, str]
) -> None:
    """Whatever a command's id, name, body and headers, the worker answers it clearly."""
    before = live.stored()
    reply = live.request(f"cmd.{aggregate}.{id_}.{command}", body, hdrs)
    check_reply(live, reply.data, {"aggregate", "version", "seq", "events"}, before)


@EXAMPLES
@given(projection=st.sampled_from(["orders", "users"]), query=queries, body=bodies, hdrs=headers)
def test_any_query_gets_a_clear_answer(
    live: Live, projection: str, query: str, body: bytes, hdrs: dict[str, str]
) -> None:
    """Whatever a query's name, body and headers, the projector answers it clearly."""
    before = live.stored()
    reply = live.request(f"query.{projection}.{query}", body, hdrs)
    check_reply(live, reply.data, {"result", "seq"}, before)


VALID_REQUESTS = [
    ("query.orders.get_order_by_id", {"order_id": "o-1"}),
    ("query.users.get_user_by_id", {"user_id": "u-1"}),
    ("query.orders.get_orders_for_user", {"user_id": "u-1"}),
    ("cmd.user.u-1.change_role", {"role": "support"}),
    ("cmd.order.o-1.update_status", {"status": "paid"}),
]


@EXAMPLES
@given(request=st.sampled_from(VALID_REQUESTS), hdrs=headers)
@example(request=VALID_REQUESTS[0], hdrs={"Cqrs-Min-Seq": str(2**64)})
@example(request=VALID_REQUESTS[3], hdrs={"Cqrs-Causation-Id": "c" * 70_000})
def test_any_headers_on_a_valid_request_get_a_clear_answer(
    live: Live, request: tuple[str, dict[str, Any]], hdrs: dict[str, str]
) -> None:
    """Whatever the headers of an otherwise valid command or query, the answer is clear."""
    subject, body = request
    before = live.stored()
    reply = live.request(subject, json.dumps(body).encode(), hdrs)
    keys = {"result", "seq"} if subject.startswith("query.") else {"version", "seq", "events"}
    check_reply(live, reply.data, keys, before)


def test_the_hostile_cases_were_tried(capsys: pytest.CaptureFixture[str]) -> None:
    """The properties above ran (their tally of outcomes is printed with -s)."""
    with capsys.disabled():
        print(f"\nhostile requests tried: {sum(TALLY.values())} {dict(sorted(TALLY.items()))}")
    assert sum(TALLY.values()) > 0

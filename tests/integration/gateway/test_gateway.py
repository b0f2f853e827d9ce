"""The HTTP gateway against real processes: nats-server with the generated accounts, a worker,
a projector and `cqrs gateway`, through a real HTTP client."""

from __future__ import annotations

import uuid
from typing import Any

import nats
import pytest

from .conftest import MAX_BODY, USER_TOKEN, Stack, admin_password

PROBLEM = "application/problem+json"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def user_args(user_id: str) -> dict[str, str]:
    return {"name": "Ada", "email": f"{user_id}@example.com", "role": "admin"}


def order_args(user_id: str) -> dict[str, Any]:
    return {"user_id": user_id, "lines": [{"sku": "book", "quantity": 2, "unit_price": "19.90"}]}


async def test_a_command_answers_the_nats_reply_with_its_sequence(stack: Stack) -> None:
    """A command returns the reply's JSON, its commit sequence in Cqrs-Seq, and the generated
    idempotency key and the passed correlation id as headers."""
    user_id = new_id("u")
    async with stack.http() as http:
        response = await http.post(
            f"/commands/user/{user_id}/create",
            json=user_args(user_id),
            headers={"X-Correlation-Id": "corr-1"},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["aggregate"] == "user" and body["id"] == user_id and body["version"] == 1
    assert [e["type"] for e in body["events"]] == ["user.created.v1"]
    assert response.headers["Cqrs-Seq"] == str(body["seq"])
    assert response.headers["Idempotency-Key"] == body["command_id"]
    assert response.headers["X-Correlation-Id"] == "corr-1"


async def test_a_retry_with_the_same_idempotency_key_applies_once(stack: Stack) -> None:
    """Sending a command again with its Idempotency-Key returns the first reply and appends
    nothing."""
    user_id = new_id("u")
    key = new_id("key")
    async with stack.http() as http:
        await http.post(f"/commands/user/{user_id}/create", json=user_args(user_id))
        path = f"/commands/user/{user_id}/change_email"
        first = await http.post(path, json={"email": "a@b.org"}, headers={"Idempotency-Key": key})
        again = await http.post(path, json={"email": "a@b.org"}, headers={"Idempotency-Key": key})
        later = await http.post(f"/commands/user/{user_id}/change_role", json={"role": "support"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and first.json()["command_id"] == key
    assert first.json()["version"] == 2 and later.json()["version"] == 3


async def test_an_idempotency_key_reused_with_other_arguments_is_a_conflict(stack: Stack) -> None:
    """The same Idempotency-Key with other arguments is refused as 409 conflict, not answered
    with the first reply."""
    user_id = new_id("u")
    key = new_id("key")
    async with stack.http() as http:
        await http.post(f"/commands/user/{user_id}/create", json=user_args(user_id))
        path = f"/commands/user/{user_id}/change_email"
        first = await http.post(path, json={"email": "a@b.org"}, headers={"Idempotency-Key": key})
        other = await http.post(path, json={"email": "c@d.org"}, headers={"Idempotency-Key": key})
    assert first.status_code == 200
    assert (other.status_code, other.json()["code"]) == (409, "conflict")


async def test_a_client_reads_its_own_write_through_cqrs_seq(stack: Stack) -> None:
    """A query sent with Cqrs-Min-Seq = the command's Cqrs-Seq sees that command's effect."""
    user_id = new_id("u")
    async with stack.http() as http:
        created = await http.post(f"/commands/user/{user_id}/create", json=user_args(user_id))
        changed = await http.post(
            f"/commands/user/{user_id}/change_email", json={"email": f"{user_id}@new.org"}
        )
        seq = changed.headers["Cqrs-Seq"]
        by_email = await http.get(
            "/queries/users/find_user_by_email",
            params={"email": f"{user_id}@new.org"},
            headers={"Cqrs-Min-Seq": seq},
        )
        by_id = await http.post(
            "/queries/users/get_user_by_id",
            json={"user_id": user_id},
            headers={"Cqrs-Min-Seq": created.headers["Cqrs-Seq"]},
        )
    assert by_email.status_code == 200, by_email.text
    assert by_email.json()["result"]["user_id"] == user_id
    assert int(by_email.headers["Cqrs-Seq"]) >= int(seq)
    assert by_id.json()["result"]["email"] == f"{user_id}@new.org"


async def test_a_query_reply_says_which_projection_version_answered(stack: Stack) -> None:
    """A query's reply carries the answering projection version, in its body and in the
    Cqrs-Projection-Version header."""
    async with stack.http() as http:
        user_id = new_id("u")
        created = await http.post(f"/commands/user/{user_id}/create", json=user_args(user_id))
        found = await http.post(
            "/queries/users/get_user_by_id",
            json={"user_id": user_id},
            headers={"Cqrs-Min-Seq": created.headers["Cqrs-Seq"]},
        )
    assert found.status_code == 200, found.text
    assert found.headers["Cqrs-Projection-Version"] == "1" and found.json()["version"] == 1


async def test_query_string_arguments_are_typed_by_the_query_schema(stack: Stack) -> None:
    """Query-string values are converted to the declared types (limit=1 is an int, an enum by
    its value) and a value that does not convert is a 422 naming the field."""
    user_id = new_id("u")
    async with stack.http() as http:
        await http.post(f"/commands/user/{user_id}/create", json=user_args(user_id))
        seqs = []
        for _ in range(2):
            reply = await http.post(
                f"/commands/order/{new_id('o')}/create", json=order_args(user_id)
            )
            seqs.append(reply.headers["Cqrs-Seq"])
        path = "/queries/orders/get_orders_for_user"
        page = await http.get(
            path,
            params={"user_id": user_id, "limit": "1", "status": "created"},
            headers={"Cqrs-Min-Seq": seqs[-1]},
        )
        bad = await http.get(path, params={"user_id": user_id, "limit": "many"})
        unknown = await http.get(path, params={"user_id": user_id, "colour": "red"})
    assert page.status_code == 200, page.text
    assert len(page.json()["result"]["orders"]) == 1
    assert bad.status_code == 422 and bad.json()["details"]["field"] == "limit"
    assert unknown.status_code == 422 and unknown.json()["details"]["field"] == "colour"


def _cases() -> list[Any]:
    big = {"name": "x" * (MAX_BODY + 10), "email": "a@b.org", "role": "admin"}
    create = "/commands/user/{id}/create"
    get_user = "/queries/users/get_user_by_id"
    orders_page = "/queries/orders/get_orders_for_user?user_id=a&limit="
    json_type = {"Content-Type": "application/json"}
    cases: list[tuple[str, str, str, dict[str, Any], int, str]] = [
        # (name, method, path, request kwargs, status, code)
        ("invalid", "POST", create, {"json": {"name": "x"}}, 422, "invalid"),
        ("unknown command", "POST", "/commands/user/{id}/fly", {}, 404, "unknown_command"),
        ("unknown aggregate", "POST", "/commands/ship/{id}/sail", {}, 404, "unknown_command"),
        ("unknown query", "GET", "/queries/users/everyone", {}, 404, "unknown_query"),
        ("not found", "GET", get_user + "?user_id=nobody", {}, 404, "not_found"),
        ("rejected", "POST", "/commands/counter/{id}/add", {"json": {"amount": -1}}, 409,
         "rejected"),
        ("internal", "POST", "/commands/counter/{id}/boom", {}, 500, "internal"),
        ("stale", "GET", get_user + "?user_id=x", {"headers": {"Cqrs-Min-Seq": "99999999"}}, 503,
         "stale"),
        ("bad id", "POST", "/commands/user/a%20b/create", {"json": {}}, 422, "invalid"),
        ("int past 64 bits", "GET", orders_page + "9" * 30, {}, 422, "invalid"),
        ("bad key", "POST", create, {"headers": {"Idempotency-Key": "a.b"}}, 422, "invalid"),
        ("bad min seq", "GET", get_user, {"headers": {"Cqrs-Min-Seq": "-1"}}, 400, "malformed"),
        ("malformed json", "POST", create, {"content": b"{no", "headers": json_type}, 400,
         "malformed"),
        ("not an object", "POST", create, {"json": [1, 2]}, 400, "malformed"),
        ("media type", "POST", create, {"content": b"name=x"}, 415, "unsupported_media_type"),
        ("too large", "POST", create, {"json": big}, 413, "too_large"),
        ("no route", "GET", "/nothing/here", {}, 404, "not_a_route"),
        ("wrong method", "DELETE", create, {}, 405, "method_not_allowed"),
    ]  # fmt: skip
    return [pytest.param(*case[1:], id=case[0]) for case in cases]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), _cases())
async def test_each_failure_is_a_problem_with_its_status(
    stack: Stack, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    """Every failure is application/problem+json with the runtime's code and the status the
    code maps to; retryable ones say when to retry."""
    async with stack.http() as http:
        response = await http.request(method, path.format(id=new_id("x")), **kwargs)
    assert (response.status_code, response.headers["Content-Type"]) == (status, PROBLEM)
    body = response.json()
    assert body["code"] == code and body["status"] == status
    assert body["type"].endswith(code) and body["title"] and isinstance(body["details"], dict)
    if status == 503:
        assert response.headers["Retry-After"]


async def test_tokens_are_required_and_scoped(stack: Stack) -> None:
    """Without a valid bearer token a request is 401; a token scoped to `user.*` and
    `users.get_user_by_id` may call exactly those and gets 403 for anything else."""
    user_id = new_id("u")
    async with stack.http(token=None) as anonymous, stack.http(token="wrong") as wrong:
        missing = await anonymous.post(f"/commands/user/{user_id}/create", json={})
        invalid = await wrong.get("/queries/users/get_user_by_id", params={"user_id": user_id})
    async with stack.http(token=USER_TOKEN) as http:
        allowed = await http.post(f"/commands/user/{user_id}/create", json=user_args(user_id))
        query = await http.get(
            "/queries/users/get_user_by_id",
            params={"user_id": user_id},
            headers={"Cqrs-Min-Seq": allowed.headers["Cqrs-Seq"]},
        )
        order = await http.post(f"/commands/order/{new_id('o')}/create", json=order_args(user_id))
        other_query = await http.get("/queries/users/find_user_by_email", params={"email": "a@b"})
    assert missing.status_code == invalid.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.headers["Content-Type"] == PROBLEM
    assert allowed.status_code == query.status_code == 200
    assert order.status_code == other_query.status_code == 403
    assert order.json()["details"]["scope"] == "order.create"


async def test_no_other_request_header_reaches_nats(stack: Stack) -> None:
    """Only the documented headers become NATS headers: a causation id, a NATS header name or
    anything else sent over HTTP is not on the stored commit."""
    user_id = new_id("u")
    async with stack.http() as http:
        response = await http.post(
            f"/commands/user/{user_id}/create",
            json=user_args(user_id),
            headers={
                "X-Correlation-Id": "corr-2",
                "Cqrs-Causation-Id": "sneaky",
                "Nats-Expected-Stream": "OTHER",
                "X-Extra": "1",
            },
        )
    assert response.status_code == 200
    nc = await nats.connect(stack.nats_url, user="admin", password=admin_password())
    try:
        stored = await nc.jetstream().get_msg("EVENTS", int(response.headers["Cqrs-Seq"]))
    finally:
        await nc.close()
    headers = {k.lower(): v for k, v in (stored.headers or {}).items()}
    assert headers["cqrs-correlation-id"] == "corr-2"
    assert "cqrs-causation-id" not in headers
    assert not {"x-extra", "nats-expected-stream", "authorization"} & set(headers)


async def test_openapi_docs_health_and_readiness_are_served(stack: Stack) -> None:
    """/openapi.json has one operation per command and per query, /docs renders it, /healthz
    and /readyz answer without a token."""
    async with stack.http(token=None) as http:
        document = (await http.get("/openapi.json")).json()
        docs = await http.get("/docs")
        health = await http.get("/healthz")
        ready = await http.get("/readyz")
    assert document["openapi"].startswith("3.1")
    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    assert {"command_user_create", "command_order_cancel", "command_counter_boom"} <= operations
    assert {"query_users_get_user_by_id", "query_orders_get_orders_for_user_post"} <= operations
    assert "default-src 'none'" in docs.headers["content-security-policy"]
    assert health.status_code == ready.status_code == 200
    assert "aggregate-user" in ready.json()["services"]

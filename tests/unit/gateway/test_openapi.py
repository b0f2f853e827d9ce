"""The OpenAPI document generated from the app's definitions."""

from __future__ import annotations

from typing import Any

from runtime.domain.app import load_app
from runtime.errors import Internal
from runtime.gateway.openapi import openapi_document
from runtime.gateway.problems import STATUS, problem, problem_for


def document() -> dict[str, Any]:
    return openapi_document(load_app())


def test_one_operation_per_command_and_two_per_query() -> None:
    """Every command is a POST, every query a GET and a POST, under their wire names."""
    app = load_app()
    paths = document()["paths"]
    for aggregate in app.aggregates:
        for command in aggregate.command_names:
            assert "post" in paths[f"/commands/{aggregate.name}/{{id}}/{command}"]
    for projection in app.projections:
        for query in projection.queries:
            assert set(paths[f"/queries/{projection.name}/{query}"]) == {"get", "post"}


def test_request_and_response_schemas_are_the_validated_types() -> None:
    """The request body of user.create is the msgspec schema of its argument type, and the
    query's result is the schema of the handler's return type."""
    doc = document()
    components = doc["components"]["schemas"]
    create = doc["paths"]["/commands/user/{id}/create"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert set(components[ref.rsplit("/", 1)[1]]["required"]) == {"name", "email"}
    get_order = doc["paths"]["/queries/orders/get_order_by_id"]["get"]
    result = get_order["responses"]["200"]["content"]["application/json"]["schema"]
    assert result["properties"]["result"] == {"$ref": "#/components/schemas/OrderView"}
    assert [p["name"] for p in get_order["parameters"]] == ["order_id", "Cqrs-Min-Seq"]


def test_errors_are_documented_as_problems() -> None:
    """Each operation lists its problem+json answers, and every code has a status."""
    create = document()["paths"]["/commands/user/{id}/create"]["post"]["responses"]
    assert {"409", "422", "429", "503", "504"} <= set(create)
    assert "application/problem+json" in create["409"]["content"]
    assert all(100 <= status < 600 for status, _ in STATUS.values())


def test_retryable_problems_say_when_and_unknown_codes_are_internal() -> None:
    """busy is 429 with Retry-After; a code the gateway does not know is a 500."""
    assert problem("busy", "full").headers["Retry-After"]
    error = Internal("x")
    error.code = "brand_new"  # type: ignore[misc]
    assert problem_for(error).status_code == 500

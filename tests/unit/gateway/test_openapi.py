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


def test_argument_schemas_state_what_the_runtime_refuses() -> None:
    """Argument schemas close objects, and carry the item counts, patterns and bounds of the
    types' Meta constraints; result schemas stay open to new fields."""
    components = document()["components"]["schemas"]
    order_create = components["aggregates.order.Create"]
    assert order_create["additionalProperties"] is False
    assert order_create["properties"]["lines"]["minItems"] == 1
    line = components["Line"]
    assert line["additionalProperties"] is False
    assert line["properties"]["quantity"]["minimum"] == 1
    assert "pattern" in line["properties"]["unit_price"]
    assert components["ChangeEmail"]["properties"]["email"]["pattern"]
    assert components["GetOrdersForUser"]["properties"]["limit"]["maximum"] == 500
    assert "additionalProperties" not in components["OrderView"]


def test_security_is_declared_only_with_tokens() -> None:
    """Without tokens no operation asks for a bearer token; with tokens every command and query
    does, and the health checks never."""
    app = load_app()
    open_doc = openapi_document(app)
    assert "securitySchemes" not in open_doc["components"]
    assert all(op["security"] == [] for path in open_doc["paths"].values() for op in path.values())
    secured = openapi_document(app, secured=True)
    assert secured["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    create = secured["paths"]["/commands/user/{id}/create"]["post"]
    assert create["security"] == [{"bearer": []}]
    assert secured["paths"]["/healthz"]["get"]["security"] == []


def test_a_body_is_required_only_when_an_empty_one_is_invalid() -> None:
    """user.create has required fields, so its body is required; order.cancel has none."""
    paths = document()["paths"]
    assert paths["/commands/user/{id}/create"]["post"]["requestBody"]["required"] is True
    assert paths["/commands/order/{id}/cancel"]["post"]["requestBody"]["required"] is False


def test_an_optional_query_parameter_has_no_null() -> None:
    """A query string cannot say null, so the optional status of get_orders_for_user is its
    enum alone."""
    get = document()["paths"]["/queries/orders/get_orders_for_user"]["get"]
    status = next(p for p in get["parameters"] if p["name"] == "status")
    assert status["required"] is False and "anyOf" not in status["schema"]

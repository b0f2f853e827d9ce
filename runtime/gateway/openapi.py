"""The OpenAPI 3.1 document of the gateway, generated from the application's definitions.

Request and response schemas come from ``msgspec.json.schema_components`` over the very types
the runtime validates commands and queries with (and the result types query handlers declare),
so the document cannot drift from what the workers accept: the ``Meta`` constraints on those
types (patterns, lengths, bounds, item counts) are msgspec's checks and the schema's keywords at
once, and :func:`runtime.wire.strict.state_checks` adds the rules the runtime applies to every
argument (no unknown fields, 64-bit integers, plain decimal strings). Data valid by the schema is
accepted and data invalid by it is refused with a problem. One operation per command and per
query; every operation lists the problem+json answers it can give, and requires a bearer token
only when the gateway has tokens.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..domain.app import App
from ..wire.naming import ID_PATTERN, SERVICE_VERSION
from ..wire.strict import INT_MAX, state_checks
from .problems import PROBLEM_JSON, STATUS

REF = "#/components/schemas/{name}"
COMMAND_REPLY_REF = {"$ref": REF.format(name="CommandReply")}

COMMAND_REPLY: dict[str, Any] = {
    "type": "object",
    "required": ["aggregate", "id", "version", "seq", "command_id", "events"],
    "properties": {
        "aggregate": {"type": "string"},
        "id": {"type": "string"},
        "version": {"type": "integer", "description": "the aggregate's event count after it"},
        "seq": {"type": "integer", "description": "the stream sequence of the commit"},
        "command_id": {"type": "string"},
        "events": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "data"],
                "properties": {"type": {"type": "string"}, "data": {}},
            },
        },
    },
}
PROBLEM: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code", "details"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "enum": sorted(STATUS)},
        "details": {"type": "object"},
        "instance": {"type": "string"},
    },
}
TOKEN = {"type": "string", "pattern": f"^{ID_PATTERN.pattern}$"}
SEQ = {"type": "integer", "minimum": 0, "maximum": INT_MAX}
PROJECTION_VERSION = {"type": "integer", "minimum": 1, "description": "the answering version"}
HEADERS = {
    "idempotency": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "The command id: a retry with the same key never applies the command twice.",
        "schema": TOKEN,
    },
    "correlation": {
        "name": "X-Correlation-Id",
        "in": "header",
        "required": False,
        "description": "Passed through to the command's commit and returned.",
        "schema": TOKEN,
    },
    "min_seq": {
        "name": "Cqrs-Min-Seq",
        "in": "header",
        "required": False,
        "description": "Read-your-writes: answer only from a read model at or past this "
        "sequence (send the Cqrs-Seq of your command).",
        "schema": SEQ,
    },
}
COMMAND_ERRORS = ("invalid", "malformed", "unknown_command", "rejected", "conflict", "busy")
QUERY_ERRORS = ("invalid", "malformed", "unknown_query", "not_found", "stale")
COMMON_ERRORS = (
    "unauthorized",
    "forbidden",
    "too_large",
    "no_responders",
    "unavailable",
    "timeout",
    "internal",
)


def _errors(codes: tuple[str, ...], *, common: bool = True) -> dict[str, Any]:
    by_status: dict[str, list[str]] = {}
    for code in (*codes, *(COMMON_ERRORS if common else ())):
        by_status.setdefault(str(STATUS[code][0]), []).append(code)
    return {
        status: {
            "description": "problem: " + ", ".join(codes),
            "content": {PROBLEM_JSON: {"schema": {"$ref": REF.format(name="Problem")}}},
        }
        for status, codes in sorted(by_status.items())
    }


def _resolved(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    return components.get(schema.get("$ref", "").rsplit("/", 1)[-1], schema)  # type: ignore[no-any-return]


def _body(schema: dict[str, Any] | None, components: dict[str, Any]) -> dict[str, Any]:
    """A JSON object body; no body at all is ``{}``, so it is required only when ``{}`` lacks
    a required field."""
    return {
        "required": bool(schema and _resolved(schema, components).get("required")),
        "content": {
            "application/json": {
                "schema": schema or {"type": "object", "additionalProperties": False}
            }
        },
    }


def _query_parameters(schema: dict[str, Any] | None, components: dict[str, Any]) -> list[Any]:
    """The query-string parameters of a query: its scalar argument fields."""
    if schema is None:
        return []
    target = _resolved(schema, components)
    required = set(target.get("required", ()))
    parameters = []
    for name, prop in target.get("properties", {}).items():
        if _resolved(prop, components).get("type") in ("object", "array"):
            continue  # does not fit a query string: POST a JSON body instead
        if "anyOf" in prop:  # a query string has no null: leaving the parameter out is null
            kinds = [k for k in prop["anyOf"] if k.get("type") != "null"]
            prop = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
            prop = {**(kinds[0] if len(kinds) == 1 else {"anyOf": kinds}), **prop}
        parameters.append(
            {"name": name, "in": "query", "required": name in required, "schema": prop}
        )
    return parameters


def openapi_document(
    app: App, *, secured: bool = False, title: str = "cqrs-runtime gateway"
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every command and query ``app`` defines; ``secured``: the
    gateway requires bearer tokens."""
    commands = [(a, c, a.command_args_type(c)) for a in app.aggregates for c in a.command_names]
    queries = [(p, q, *p.query_types(q)) for p in app.projections for q in p.queries]
    arg_types = [t for _, _, t in commands if t is not None]
    arg_types += [args for _, _, args, _ in queries if args is not None]
    arg_schemas, arg_components = msgspec.json.schema_components(arg_types, ref_template=REF)
    state_checks(arg_schemas)
    state_checks(arg_components)
    # Results are generated apart, so the argument rules do not close them to additions; a type
    # that is both an argument and a result keeps its argument schema.
    result_schemas, result_components = msgspec.json.schema_components(
        [result for *_, result in queries], ref_template=REF
    )
    components = {**result_components, **arg_components}
    by_type, results = iter(arg_schemas), iter(result_schemas)
    paths: dict[str, Any] = {}
    id_param = {"name": "id", "in": "path", "required": True, "schema": TOKEN}
    auth: list[dict[str, list[str]]] = [{"bearer": []}] if secured else []
    for aggregate, command, args in commands:
        schema = next(by_type) if args is not None else None
        paths[f"/commands/{aggregate.name}/{{id}}/{command}"] = {
            "post": {
                "operationId": f"command_{aggregate.name}_{command}",
                "summary": f"{aggregate.name}.{command}",
                "tags": [f"aggregate {aggregate.name}"],
                "parameters": [id_param, HEADERS["idempotency"], HEADERS["correlation"]],
                "requestBody": _body(schema, components),
                "security": auth,
                "responses": {
                    "200": {
                        "description": "the command's commit (no events: an accepted no-op)",
                        "headers": {
                            "Cqrs-Seq": {"schema": SEQ},
                            "Idempotency-Key": {"schema": TOKEN},
                        },
                        "content": {"application/json": {"schema": COMMAND_REPLY_REF}},
                    },
                    **_errors(COMMAND_ERRORS),
                },
            }
        }
    for projection, query, args, _ in queries:
        args_schema = next(by_type) if args is not None else None
        result_schema = next(results)
        reply = {
            "description": "the answer, the sequence the read model had applied and the "
            "projection version that answered",
            "headers": {
                "Cqrs-Seq": {"schema": SEQ},
                "Cqrs-Projection-Version": {"schema": PROJECTION_VERSION},
            },
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["result", "seq", "version"],
                        "properties": {
                            "result": result_schema,
                            "seq": SEQ,
                            "version": PROJECTION_VERSION,
                        },
                    }
                }
            },
        }
        operation = {
            "summary": f"{projection.name}.{query}",
            "tags": [f"projection {projection.name}"],
            "security": auth,
            "responses": {"200": reply, **_errors(QUERY_ERRORS)},
        }
        paths[f"/queries/{projection.name}/{query}"] = {
            "get": {
                **operation,
                "operationId": f"query_{projection.name}_{query}",
                "parameters": [
                    *_query_parameters(args_schema, components),
                    HEADERS["min_seq"],
                ],
            },
            "post": {
                **operation,
                "operationId": f"query_{projection.name}_{query}_post",
                "parameters": [HEADERS["min_seq"]],
                "requestBody": _body(args_schema, components),
            },
        }
    not_ready = _errors(("not_ready",), common=False)
    for path, summary in (("/healthz", "the process lives"), ("/readyz", "NATS and services")):
        paths[path] = {
            "get": {
                "operationId": path.strip("/"),
                "summary": summary,
                "security": [],
                "responses": {"200": {"description": "yes"}, **not_ready},
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": SERVICE_VERSION},
        "paths": paths,
        "components": {
            "schemas": {**components, "CommandReply": COMMAND_REPLY, "Problem": PROBLEM},
            **(
                {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
                if secured
                else {}
            ),
        },
    }
